/* /metrics: the Prometheus text exposition format (version 0.0.4) of the array's
 * figures. Names follow the Prometheus conventions: a rodstore_ prefix, base units
 * (bytes, seconds) in the name, _total on counters, one HELP and one TYPE line per
 * family. Counters come from the SCSI core (per-volume I/O, sense keys, copy offload),
 * the iSCSI server and the engine. Space figures need scans of the maps: they come
 * from a cache (struct rod_metrics_space) the HTTP server refreshes at most every
 * metrics_interval, so a scrape costs O(volumes); rodstore_space_figures_age_seconds
 * says how old they are. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/ctl_http.h"
#include "rod/util.h"

/* SPC-4 table 47 names, lowercased for a label value. */
static const char *const sense_key_names[16] = {
	"no_sense", "recovered_error", "not_ready", "medium_error", "hardware_error",
	"illegal_request", "unit_attention", "data_protect", "blank_check", "vendor_specific",
	"copy_aborted", "aborted_command", "reserved_0c", "volume_overflow", "miscompare",
	"completed",
};

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value with \, " and newline escaped (volume names cannot hold them, but the
 * format must stay parseable whatever a name becomes). */
static void label_value(FILE *f, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void sample_u(FILE *f, const char *name, const char *lname, const char *lval, uint64_t v)
{
	fputs(name, f);
	if (lname) {
		fprintf(f, "{%s=\"", lname);
		label_value(f, lval);
		fputs("\"}", f);
	}
	fprintf(f, " %" PRIu64 "\n", v);
}

struct vol_row {
	struct rod_vol_info info;
	const struct rod_scsi_vol_stats *io;    /* NULL: no I/O since start */
};

static const struct rod_scsi_vol_stats zero_io;

static int vol_cmp(const void *a, const void *b)
{
	return strcmp(((const struct vol_row *)a)->info.name, ((const struct vol_row *)b)->info.name);
}

static void io_family(FILE *f, const struct vol_row *rows, size_t n, bool write)
{
	const char *dir = write ? "write" : "read";
	char name[96], help[160];
	snprintf(name, sizeof(name), "rodstore_volume_%s_ops_total", dir);
	snprintf(help, sizeof(help), "%s commands completed (any status), per volume.",
		 write ? "WRITE, WRITE SAME, WRITE AND VERIFY, COMPARE AND WRITE" : "READ");
	family(f, name, "counter", help);
	for (size_t i = 0; i < n; i++)
		sample_u(f, name, "volume", rows[i].info.name, (write ? &rows[i].io->write : &rows[i].io->read)->ops);
	snprintf(name, sizeof(name), "rodstore_volume_%s_bytes_total", dir);
	snprintf(help, sizeof(help), "Bytes %s by commands that ended GOOD (data moved over the transport), per volume.",
		 write ? "received" : "sent");
	family(f, name, "counter", help);
	for (size_t i = 0; i < n; i++)
		sample_u(f, name, "volume", rows[i].info.name, (write ? &rows[i].io->write : &rows[i].io->read)->bytes);
	snprintf(name, sizeof(name), "rodstore_volume_%s_latency_seconds", dir);
	snprintf(help, sizeof(help), "Time of %s commands in the target, from the command with its Data-Out to its status, per volume.", dir);
	family(f, name, "histogram", help);
	for (size_t i = 0; i < n; i++) {
		const struct rod_scsi_io_stats *s = write ? &rows[i].io->write : &rows[i].io->read;
		uint64_t cum = 0;
		for (unsigned b = 0; b <= ROD_SCSI_LAT_BOUNDS; b++) {
			cum += s->lat_bucket[b];
			fprintf(f, "%s_bucket{volume=\"", name);
			label_value(f, rows[i].info.name);
			if (b < ROD_SCSI_LAT_BOUNDS)
				fprintf(f, "\",le=\"%g\"} %" PRIu64 "\n", rod_scsi_lat_bound(b), cum);
			else
				fprintf(f, "\",le=\"+Inf\"} %" PRIu64 "\n", cum);
		}
		fprintf(f, "%s_sum{volume=\"", name);
		label_value(f, rows[i].info.name);
		fprintf(f, "\"} %.9f\n", (double)s->lat_sum_ns / 1e9);
		fprintf(f, "%s_count{volume=\"", name);
		label_value(f, rows[i].info.name);
		/* the +Inf bucket, so _count and the buckets agree even mid-update */
		fprintf(f, "\"} %" PRIu64 "\n", cum);
	}
}

static void volume_families(FILE *f, const struct rod_metrics_src *src, const struct rod_scsi_stats_snapshot *ss)
{
	struct rod_vol_info *vols = NULL;
	size_t nv = 0, n = 0;
	if (rod_vol_list(src->store, &vols, &nv))
		return;
	struct vol_row *rows = calloc(nv ? nv : 1, sizeof(*rows));
	if (!rows) {
		free(vols);
		return;
	}
	for (size_t i = 0; i < nv; i++) {
		if (vols[i].destroyed || vols[i].is_snapshot)
			continue;
		rows[n].info = vols[i];
		rows[n].io = &zero_io;
		for (size_t k = 0; ss && k < ss->n_vols; k++)
			if (ss->vols[k].vol_id == vols[i].id)
				rows[n].io = &ss->vols[k];
		n++;
	}
	free(vols);
	qsort(rows, n, sizeof(*rows), vol_cmp);

	family(f, "rodstore_volume_size_bytes", "gauge", "Provisioned size of the volume.");
	for (size_t i = 0; i < n; i++)
		sample_u(f, "rodstore_volume_size_bytes", "volume", rows[i].info.name, rows[i].info.size);
	/* per-volume space: from the cache (a scan of the volume's map otherwise) */
	struct rod_space *sp = calloc(n ? n : 1, sizeof(*sp));
	bool *have = calloc(n ? n : 1, sizeof(*have));
	for (size_t i = 0; sp && have && i < n; i++) {
		if (!src->space) {
			have[i] = rod_vol_space(src->store, rows[i].info.name, &sp[i]) == 0;
			continue;
		}
		for (size_t k = 0; k < src->space->n_vols && !have[i]; k++)
			if (src->space->vols[k].vol_id == rows[i].info.id) {
				sp[i] = src->space->vols[k].sp;
				have[i] = true;
			}
	}
	if (sp && have) {
		family(f, "rodstore_volume_logical_bytes", "gauge", "Host-written bytes currently mapped in the volume.");
		for (size_t i = 0; i < n; i++)
			if (have[i])
				sample_u(f, "rodstore_volume_logical_bytes", "volume", rows[i].info.name, sp[i].logical);
		family(f, "rodstore_volume_physical_bytes", "gauge",
		       "Bytes of stored (reduced) chunks the volume references.");
		for (size_t i = 0; i < n; i++)
			if (have[i])
				sample_u(f, "rodstore_volume_physical_bytes", "volume", rows[i].info.name, sp[i].physical);
	}
	free(sp);
	free(have);
	io_family(f, rows, n, false);
	io_family(f, rows, n, true);
	free(rows);
}

static void space_families(FILE *f, const struct rod_metrics_src *src)
{
	struct rod_space s;
	if (src->space) {
		if (!src->space->have_array)
			return;
		s = src->space->array;
	} else if (rod_store_space(src->store, &s)) {
		return;
	}
	static const struct {
		const char *name, *help;
		size_t off;
	} g[] = {
		{ "rodstore_space_capacity_bytes", "Usable capacity of the store.", offsetof(struct rod_space, capacity) },
		{ "rodstore_space_used_bytes", "Bytes of segment files on disk (garbage included).",
		  offsetof(struct rod_space, used) },
		{ "rodstore_space_free_bytes", "Capacity minus used.", offsetof(struct rod_space, free) },
		{ "rodstore_space_provisioned_bytes", "Sum of volume sizes.", offsetof(struct rod_space, provisioned) },
		{ "rodstore_space_logical_bytes", "Host-written bytes currently mapped, all volumes.",
		  offsetof(struct rod_space, logical) },
		{ "rodstore_space_physical_bytes", "Bytes of stored chunks referenced (unique).",
		  offsetof(struct rod_space, physical) },
		{ "rodstore_space_shared_bytes", "Physical bytes referenced by more than one volume or snapshot.",
		  offsetof(struct rod_space, shared) },
		{ "rodstore_space_snapshot_bytes", "Physical bytes referenced only by snapshots.",
		  offsetof(struct rod_space, snapshots) },
	};
	for (size_t i = 0; i < ROD_ARRAY_SIZE(g); i++) {
		family(f, g[i].name, "gauge", g[i].help);
		sample_u(f, g[i].name, NULL, NULL, *(const uint64_t *)((const char *)&s + g[i].off));
	}
	family(f, "rodstore_data_reduction_ratio", "gauge",
	       "Logical bytes over physical bytes (1 when nothing is stored).");
	fprintf(f, "rodstore_data_reduction_ratio %.6f\n", s.reduction);
}

static void store_families(FILE *f, struct rod_store *store)
{
	struct rod_store_stats st;
	memset(&st, 0, sizeof(st));
	rod_store_stats(store, &st);
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} g[] = {
		{ "rodstore_store_user_written_bytes_total", "counter", "Data bytes callers asked the engine to write.",
		  offsetof(struct rod_store_stats, bytes_written_user) },
		{ "rodstore_store_disk_written_bytes_total", "counter",
		  "Bytes written to segment files (data, headers, padding).",
		  offsetof(struct rod_store_stats, bytes_written_disk) },
		{ "rodstore_store_commits_total", "counter", "Group commits (fdatasyncs of the log).",
		  offsetof(struct rod_store_stats, commits) },
		{ "rodstore_store_segments", "gauge", "Segment files present.", offsetof(struct rod_store_stats, segments) },
		{ "rodstore_gc_runs_total", "counter", "Garbage-collection passes completed.",
		  offsetof(struct rod_store_stats, gc_runs) },
		{ "rodstore_gc_segments_freed_total", "counter", "Segment files freed by garbage collection.",
		  offsetof(struct rod_store_stats, gc_segments_freed) },
		{ "rodstore_gc_moved_bytes_total", "counter", "Live bytes garbage collection rewrote.",
		  offsetof(struct rod_store_stats, gc_bytes_moved) },
	};
	for (size_t i = 0; i < ROD_ARRAY_SIZE(g); i++) {
		family(f, g[i].name, g[i].type, g[i].help);
		sample_u(f, g[i].name, NULL, NULL, *(const uint64_t *)((const char *)&st + g[i].off));
	}
	family(f, "rodstore_store_recovery_seconds", "gauge", "Time the last start spent replaying the log.");
	fprintf(f, "rodstore_store_recovery_seconds %.9f\n", (double)st.recovery_ns / 1e9);
}

static void scsi_families(FILE *f, const struct rod_scsi_stats_snapshot *ss)
{
	family(f, "rodstore_scsi_errors_total", "counter", "Commands ended with CHECK CONDITION, by sense key.");
	for (unsigned k = 1; k < 16; k++)       /* NO SENSE is not an error */
		sample_u(f, "rodstore_scsi_errors_total", "sense_key", sense_key_names[k], ss->sense_keys[k]);
	family(f, "rodstore_copy_offload_ops_total", "counter",
	       "Copy-offload commands that completed GOOD, by kind (xcopy: EXTENDED COPY, odx: WRITE USING TOKEN, "
	       "zero: WRITE USING TOKEN with the zero token).");
	for (unsigned k = 0; k < ROD_COPY_KINDS; k++)
		sample_u(f, "rodstore_copy_offload_ops_total", "kind", rod_scsi_copy_kind_name(k), ss->copy_ops[k]);
	family(f, "rodstore_copy_offload_bytes_total", "counter", "Bytes copied (or zeroed) by copy offload, by kind.");
	for (unsigned k = 0; k < ROD_COPY_KINDS; k++)
		sample_u(f, "rodstore_copy_offload_bytes_total", "kind", rod_scsi_copy_kind_name(k), ss->copy_bytes[k]);
	family(f, "rodstore_copy_offload_errors_total", "counter",
	       "Copy-offload commands that started copying and did not end GOOD, by kind.");
	for (unsigned k = 0; k < ROD_COPY_KINDS; k++)
		sample_u(f, "rodstore_copy_offload_errors_total", "kind", rod_scsi_copy_kind_name(k), ss->copy_errors[k]);
	family(f, "rodstore_rod_tokens_created_total", "counter", "ROD tokens created by POPULATE TOKEN.");
	sample_u(f, "rodstore_rod_tokens_created_total", NULL, NULL, ss->populate_tokens);
	family(f, "rodstore_rod_tokens_live", "gauge", "ROD tokens held by the array now.");
	sample_u(f, "rodstore_rod_tokens_live", NULL, NULL, ss->tokens_live);
	family(f, "rodstore_scsi_stats_dropped_total", "counter",
	       "Commands not counted per volume (more volumes with I/O than statistics slots).");
	sample_u(f, "rodstore_scsi_stats_dropped_total", NULL, NULL, ss->volumes_dropped);
}

static void iscsi_families(FILE *f, const struct rod_iscsi_stats *is)
{
	family(f, "rodstore_iscsi_sessions", "gauge", "Logged-in iSCSI sessions.");
	sample_u(f, "rodstore_iscsi_sessions", NULL, NULL, is->sessions);
	family(f, "rodstore_iscsi_connections", "gauge", "Open iSCSI connections.");
	sample_u(f, "rodstore_iscsi_connections", NULL, NULL, is->connections);
	family(f, "rodstore_iscsi_pdus_received_total", "counter", "iSCSI PDUs received.");
	sample_u(f, "rodstore_iscsi_pdus_received_total", NULL, NULL, is->pdus_in);
	family(f, "rodstore_iscsi_pdus_sent_total", "counter", "iSCSI PDUs sent.");
	sample_u(f, "rodstore_iscsi_pdus_sent_total", NULL, NULL, is->pdus_out);
	family(f, "rodstore_iscsi_bad_pdus_total", "counter", "Connections dropped for malformed PDUs.");
	sample_u(f, "rodstore_iscsi_bad_pdus_total", NULL, NULL, is->bad_pdus);
	family(f, "rodstore_iscsi_thread_moves_total", "counter",
	       "Network threads moved to the CPU of the initiator they serve.");
	sample_u(f, "rodstore_iscsi_thread_moves_total", NULL, NULL, is->thread_moves);
}

static void ctl_families(FILE *f, const struct rod_metrics_src *src)
{
	if (src->space && src->space->computed_ns) {
		family(f, "rodstore_space_figures_age_seconds", "gauge",
		       "Age of the space figures shown (recomputed at most every rod.conf metrics_interval).");
		fprintf(f, "rodstore_space_figures_age_seconds %.3f\n",
			(double)(rod_now_ns() - src->space->computed_ns) / 1e9);
		family(f, "rodstore_space_figures_compute_seconds", "gauge", "What computing the space figures took.");
		fprintf(f, "rodstore_space_figures_compute_seconds %.6f\n", (double)src->space->cost_ns / 1e9);
	}
	if (!src->ctl)
		return;
	struct rod_ctl_status st;
	rod_ctl_status_get(src->ctl, &st);
	family(f, "rodstore_gc_running", "gauge", "1 while a garbage-collection pass of a job (gc, eradicate) runs.");
	sample_u(f, "rodstore_gc_running", NULL, NULL, st.gc_running);
	family(f, "rodstore_gc_pass_segments", "gauge",
	       "Segments of the running (or last) GC pass: examined or moved so far (state=done) and in all "
	       "(state=total; grows once the segments worth moving are known).");
	fprintf(f, "rodstore_gc_pass_segments{state=\"done\"} %" PRIu64 "\n", st.gc_done);
	fprintf(f, "rodstore_gc_pass_segments{state=\"total\"} %" PRIu64 "\n", st.gc_total);
	family(f, "rodstore_gc_pass_read_bytes", "gauge", "Segment bytes the running (or last) GC pass read.");
	sample_u(f, "rodstore_gc_pass_read_bytes", NULL, NULL, st.gc_read);
	family(f, "rodstore_gc_pass_moved_bytes", "gauge", "Live bytes the running (or last) GC pass moved.");
	sample_u(f, "rodstore_gc_pass_moved_bytes", NULL, NULL, st.gc_moved);
	family(f, "rodstore_jobs", "gauge", "Jobs of the control plane, by state.");
	fprintf(f, "rodstore_jobs{state=\"queued\"} %" PRIu64 "\n", st.jobs_queued);
	fprintf(f, "rodstore_jobs{state=\"running\"} %" PRIu64 "\n", st.jobs_running);
}

int rod_metrics_space_compute(struct rod_store *s, struct rod_metrics_space *out)
{
	uint64_t t0 = rod_now_ns();
	struct rod_vol_info *vols = NULL;
	size_t nv = 0;
	memset(out, 0, sizeof(*out));
	int rc = rod_vol_list(s, &vols, &nv);
	if (rc)
		return rc;
	out->vols = calloc(nv ? nv : 1, sizeof(*out->vols));
	if (!out->vols) {
		free(vols);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nv; i++) {
		if (vols[i].destroyed || vols[i].is_snapshot)
			continue;
		if (rod_vol_space(s, vols[i].name, &out->vols[out->n_vols].sp) == 0)
			out->vols[out->n_vols++].vol_id = vols[i].id;
	}
	free(vols);
	out->have_array = rod_store_space(s, &out->array) == 0;
	out->computed_ns = rod_now_ns();
	out->cost_ns = out->computed_ns - t0;
	return 0;
}

void rod_metrics_space_release(struct rod_metrics_space *sp)
{
	free(sp->vols);
	memset(sp, 0, sizeof(*sp));
}

int rod_metrics_render(const struct rod_metrics_src *src, char **text, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f)
		return -ENOMEM;
	struct rod_scsi_stats_snapshot ss;
	bool have_ss = src->scsi_stats && src->scsi_stats(src->scsi_arg, &ss) == 0;
	if (src->store) {
		volume_families(f, src, have_ss ? &ss : NULL);
		space_families(f, src);
		store_families(f, src->store);
	}
	if (have_ss) {
		scsi_families(f, &ss);
		free(ss.vols);
	}
	ctl_families(f, src);
	if (src->iscsi_stats) {
		struct rod_iscsi_stats is;
		memset(&is, 0, sizeof(is));
		src->iscsi_stats(src->iscsi_arg, &is);
		iscsi_families(f, &is);
	}
	if (fclose(f)) {
		free(buf);
		return -ENOMEM;
	}
	*text = buf;
	*len = n;
	return 0;
}

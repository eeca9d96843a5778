/* The storage engine (lib/store): volumes of 4 KiB grains over RocksDB metadata and
 * append-only segment files. Knows nothing of SCSI. See DESIGN.md "Storage engine".
 *
 * Every function returns 0 or a negative errno:
 *   -ENOENT  no such volume/snapshot      -EEXIST  name taken
 *   -EINVAL  bad argument (alignment, name, size)
 *   -ERANGE  offset/length beyond the volume's size
 *   -ENOSPC  the store is below its free-space reserve (new data refused)
 *   -EROFS   write to a snapshot or a pinned view
 *   -EILSEQ  compare-and-write miscompare (see rod_io.miscompare_off)
 *   -EBADMSG a stored chunk failed its checksum
 *   -EIO     I/O error
 *   -EBUSY   the object is in use in a way that forbids the call
 *
 * Thread safety: all calls may be made from any thread concurrently. */
#ifndef ROD_STORE_H
#define ROD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROD_GRAIN 4096u
#define ROD_SECTOR 512u
#define ROD_NAME_MAX 64          /* names are 1-63 characters + NUL */
#define ROD_SNAP_NAME_MAX 128    /* "volume.suffix" */

struct rod_store;
struct rod_vol;

/* ---- Store ---------------------------------------------------------------- */

struct rod_store_opts {
	const char *dir;            /* data directory; created if missing and create=true */
	bool create;                /* create a new store when dir holds none */
	const char *array_name;     /* array name when creating (default: host name) */
	uint64_t capacity_bytes;    /* 0: the file system's size; else a limit (full-disk tests) */
	uint64_t reserve_bytes;     /* free space kept back; 0: default (max(64 MiB, 1%)) */
	uint64_t soft_threshold_pct;/* used-space % raising the thin-provisioning UA; 0: 80 */
	bool no_gc_thread;          /* tests: run GC only when rod_store_gc is called */
	/* Key-encryption key file (docs/data-reduction.md). Created 0600 when the store has
	 * no data key yet; a missing or wrong one makes rod_store_open fail (-ENOKEY /
	 * -EKEYREJECTED) with a log line saying so. NULL: DIR/rod.key, inside the data
	 * directory (tests); rodd passes /etc/rodstore/rod.key unless told otherwise. */
	const char *key_file;
	/* Data reduction is always on; these switch a part off, for benchmarking only. */
	bool no_dedupe, no_compress, no_encrypt;
};

struct rod_array_identity {
	char name[ROD_NAME_MAX];
	uint8_t id[16];             /* random 128-bit array id, fixed at creation */
	uint8_t secret[32];         /* random array secret (HMAC key for tokens/fingerprints) */
	uint64_t created_ns;        /* wall clock at creation */
	uint32_t format_version;
};

/* Open (or create) the store in opts->dir. An unknown format version gives -EPROTO
 * and a log line saying which version was found and which this build knows. */
int rod_store_open(const struct rod_store_opts *opts, struct rod_store **out);
/* Flush everything, stop background threads, close. All volume handles must be closed. */
void rod_store_close(struct rod_store *s);
const struct rod_array_identity *rod_store_identity(const struct rod_store *s);
/* Make every completed write durable (write-back volumes included). */
int rod_store_flush(struct rod_store *s);

struct rod_store_stats {
	uint64_t recovery_ns;       /* time the last open spent replaying the log */
	uint64_t recovered_records; /* records replayed at the last open */
	uint64_t bytes_written_user;/* bytes callers asked to write (data) */
	uint64_t bytes_written_disk;/* bytes written to segment files (data + headers + padding) */
	uint64_t commits;           /* group commits (fdatasyncs of the log) */
	uint64_t segments;          /* segment files present */
	uint64_t gc_runs, gc_segments_freed, gc_bytes_moved;
	/* new chunks compressed/encrypted on the submitting threads, and on the commit
	 * thread (no chunk id could be reserved, or the segment changed meanwhile) */
	uint64_t sealed_submit, sealed_commit;
	bool read_only;             /* a commit failed: writes refused until the store reopens */
};
void rod_store_stats(struct rod_store *s, struct rod_store_stats *out);

struct rod_space {
	uint64_t provisioned;       /* sum of volume sizes */
	uint64_t logical;           /* host-written bytes currently mapped (not zero/unmapped) */
	uint64_t physical;          /* bytes of stored chunks referenced, each chunk once */
	uint64_t unique;            /* physical bytes referenced by one volume (and its snapshots) */
	uint64_t shared;            /* array: physical bytes referenced more than once; volume:
				       its physical bytes other volumes reference too (DESIGN.md
				       "Space accounting") */
	uint64_t snapshots;         /* physical bytes referenced only by snapshots */
	uint64_t capacity;          /* usable capacity of the store */
	uint64_t used;              /* bytes of segment files on disk (includes garbage) */
	uint64_t free;              /* capacity - used */
	double reduction;           /* data-reduction ratio (logical / physical), 1.0 when empty */
};
/* Rebuild the metadata database (RocksDB) of the store in dir from its segment files
 * alone, for `rodd --rebuild-metadata`. The store must not be open. The old database is
 * kept as dir/meta.old.<time>. *records (may be NULL) gets the number of log records
 * replayed. */
int rod_store_rebuild_metadata(const char *dir, uint64_t *records);

/* Fault injection, tests only (docs/reliability.md): arm the engine's named fault
 * points from a spec like ROD_FAULT's ("segment_pwrite_fail:after=3,bitflip:grain=5";
 * "" or "off" disarms all). Process-wide. 0, or -EINVAL with a message in err. */
int rod_store_fault_set(const char *spec, char *err, size_t errlen);
/* The points armed or fired since the last set, "name:after=N:count=N:fired=N[:spent],...";
 * returns the length it needed. */
size_t rod_store_fault_show(char *buf, size_t len);

/* Scrub: read and check (CRC32C, decrypt, decompress) every stored chunk referenced by a
 * volume, snapshot or destroyed volume. damaged is called for every grain that references
 * a damaged chunk; progress with grains resolved out of the total; a non-zero return of
 * either stops the scrub and is returned. */
struct rod_scrub_damage {
	uint64_t chunk_id;
	int error;                  /* -EBADMSG checksum mismatch, -EIO unreadable/undecodable */
	const char *view;           /* volume or snapshot name */
	bool is_snapshot, destroyed;
	uint32_t block_size;
	uint64_t lba, blocks;       /* in the view's blocks */
};
struct rod_scrub_stats {
	uint64_t views, grains, chunks_checked, chunks_damaged, refs_damaged;
};
int rod_store_scrub(struct rod_store *s, int (*progress)(void *arg, uint64_t done, uint64_t total),
		    int (*damaged)(void *arg, const struct rod_scrub_damage *d), void *arg,
		    struct rod_scrub_stats *st);

/* Array-wide space. */
int rod_store_space(struct rod_store *s, struct rod_space *out);

/* Run one mark-and-sweep pass now (full: rewrite every segment, for recompression).
 * GC also runs by itself in the background unless opts.no_gc_thread. */
int rod_store_gc(struct rod_store *s, bool full);
/* rod_store_gc with progress and cancel (GC jobs). progress (may be NULL) is called
 * before each segment is examined or moved and once at the end, with segments done and
 * in total (total 0: still marking; every old segment is examined, then the ones worth
 * it are moved, so total grows by those once known), segment bytes read and live bytes
 * moved so far. Non-zero from it stops the pass there: what was moved and freed stays
 * so (durable), and rod_store_gc_ex returns -ECANCELED. */
int rod_store_gc_ex(struct rod_store *s, bool full,
		    int (*progress)(void *arg, uint64_t done, uint64_t total, uint64_t bytes_read,
				    uint64_t bytes_moved),
		    void *arg);

/* Re-wrap the data encryption key with the key in new_key_file (created 0600 when
 * absent); the store uses that file from now on (the caller records the path for the
 * next open). Data is not rewritten. */
int rod_store_rekey(struct rod_store *s, const char *new_key_file);

/* True when used space is above the soft threshold (the SCSI layer raises 06/38/07). */
bool rod_store_over_soft_threshold(struct rod_store *s);

/* Small durable key/value records for the layers above (hosts, LUN maps, reservations,
 * jobs...). Keys are strings; a put is durable when it returns. Kept in their own
 * column family, logged in the segments like every metadata operation. */
int rod_store_meta_put(struct rod_store *s, const char *key, const void *val, size_t len);
/* *val is malloc'd (caller frees). -ENOENT when absent. */
int rod_store_meta_get(struct rod_store *s, const char *key, void **val, size_t *len);
int rod_store_meta_del(struct rod_store *s, const char *key);
/* Calls fn for every key starting with prefix, in key order; fn returning non-zero stops. */
int rod_store_meta_scan(struct rod_store *s, const char *prefix,
			int (*fn)(void *arg, const char *key, const void *val, size_t len), void *arg);

/* ---- Volumes and snapshots -------------------------------------------------- */

enum rod_cache_mode { ROD_CACHE_WRITE_THROUGH = 0, ROD_CACHE_WRITE_BACK = 1 };

struct rod_vol_info {
	char name[ROD_SNAP_NAME_MAX];   /* "db1" or, for a snapshot, "db1.daily-3" */
	uint64_t id;                    /* stable numeric id, never reused */
	uint8_t uuid[16];               /* random, stable: the SCSI layer builds NAA/serial from it */
	uint64_t size;                  /* bytes */
	uint32_t block_size;            /* logical block size: 512 or 4096 */
	bool is_snapshot;
	char source[ROD_SNAP_NAME_MAX]; /* snapshot: its volume; clone: what it was cloned from */
	uint64_t created_ns;
	enum rod_cache_mode cache;
	bool offload;                   /* copy offload enabled (default true) */
	bool dedupe, compress;          /* data reduction of new writes (default true) */
	bool destroyed;                 /* in the eradication queue */
	uint64_t destroyed_ns;
	struct rod_space space;         /* provisioned = size; the rest for this volume */
};

/* Create a thin volume. size must be a multiple of block_size (512 or 4096). */
int rod_vol_create(struct rod_store *s, const char *name, uint64_t size, uint32_t block_size,
		   struct rod_vol_info *out);
/* All volumes and snapshots (destroyed ones too, flagged). *out malloc'd. */
int rod_vol_list(struct rod_store *s, struct rod_vol_info **out, size_t *n);
int rod_vol_info_get(struct rod_store *s, const char *name, struct rod_vol_info *out);
int rod_vol_info_by_id(struct rod_store *s, uint64_t id, struct rod_vol_info *out);
/* Grow or shrink. Shrinking discards the data beyond the new end. */
int rod_vol_resize(struct rod_store *s, const char *name, uint64_t size);
int rod_vol_rename(struct rod_store *s, const char *old_name, const char *new_name);
int rod_vol_set_cache(struct rod_store *s, const char *name, enum rod_cache_mode mode);
int rod_vol_set_offload(struct rod_store *s, const char *name, bool on);
/* Per-volume data reduction switches, for benchmarking (default on; persisted). They
 * apply to writes from then on; encryption is array-wide (rod_store_opts). */
int rod_vol_set_reduction(struct rod_store *s, const char *name, bool dedupe, bool compress);
/* Move to the eradication queue: the name disappears from lookups by name (except
 * with rod_vol_recover/eradicate), open handles get -ENOENT on I/O. A volume's
 * snapshots stay. */
int rod_vol_destroy(struct rod_store *s, const char *name);
int rod_vol_recover(struct rod_store *s, const char *name);
/* Drop a destroyed volume for good; its space returns at the next GC. */
int rod_vol_eradicate(struct rod_store *s, const char *name);

/* Snapshot "vol.suffix" of a volume: O(1). */
int rod_vol_snapshot(struct rod_store *s, const char *vol, const char *suffix,
		     struct rod_vol_info *out);
/* Crash-consistent snapshots "vols[i].suffix" of n volumes at one instant (one commit
 * barrier): a write acknowledged before the call is in every snapshot, a write issued
 * after it returns is in none. All or nothing: an unknown volume (-ENOENT), a snapshot or
 * a name given twice (-EINVAL) or a taken snapshot name (-EEXIST) refuses the whole group.
 * out (may be NULL) gets n records, in the order of vols. */
int rod_vol_snapshot_group(struct rod_store *s, const char *const *vols, size_t n,
			   const char *suffix, struct rod_vol_info *out);
/* Writable clone of a volume or snapshot: O(1). */
int rod_vol_clone(struct rod_store *s, const char *src, const char *new_name,
		  struct rod_vol_info *out);
/* Make vol read as snap (a snapshot of vol or of any volume of the same size). */
int rod_vol_revert(struct rod_store *s, const char *vol, const char *snap);

/* ---- I/O ------------------------------------------------------------------------ */

/* Open a handle for I/O by name or id. Handles are reference counted and cheap. */
int rod_vol_open(struct rod_store *s, const char *name, struct rod_vol **out);
int rod_vol_open_id(struct rod_store *s, uint64_t id, struct rod_vol **out);
void rod_vol_close(struct rod_vol *v);
/* Current size/block size/id of an open handle (after resizes). */
uint64_t rod_vol_size(struct rod_vol *v);
uint32_t rod_vol_block_size(struct rod_vol *v);
uint64_t rod_vol_id(struct rod_vol *v);
enum rod_cache_mode rod_vol_cache(struct rod_vol *v);

/* A read-only point-in-time view of v as of now (the ODX token's pin): O(1), not
 * persisted, released by rod_vol_close. Later writes to v do not show in it. */
int rod_vol_pin(struct rod_vol *v, struct rod_vol **out);

enum rod_io_op {
	ROD_IO_READ,
	ROD_IO_WRITE,
	ROD_IO_FLUSH,     /* make earlier completed writes of this volume durable */
	ROD_IO_ZERO,      /* range reads as zeros afterwards; stays mapped (allocated) */
	ROD_IO_UNMAP,     /* range deallocated; reads as zeros */
	ROD_IO_CAW,       /* compare buf[0..len) with the data, if equal write buf[len..2len) */
	ROD_IO_COPY,      /* copy [src_off, src_off+len) of src into [off, off+len) of vol */
	ROD_IO_VERIFY,    /* compare buf with the data (no write) */
};

#define ROD_IO_FUA 0x1    /* write: durable before completion even on a write-back volume */

/* One request. Offsets and lengths are bytes, multiples of 512 (COPY: of 512 too; the
 * aligned middle is O(1), misaligned heads/tails are copied as data). */
struct rod_io {
	enum rod_io_op op;
	unsigned flags;
	struct rod_vol *vol;
	uint64_t off;
	uint64_t len;
	void *buf;                 /* READ: destination; WRITE/VERIFY: source; CAW: 2*len */
	struct rod_vol *src;       /* COPY source (a volume, snapshot or pin) */
	uint64_t src_off;
	/* results */
	int result;                /* 0 or -errno */
	uint64_t miscompare_off;   /* CAW/VERIFY -EILSEQ: byte offset of first difference */
	/* completion: called exactly once, from any thread (possibly inside submit) */
	void (*done)(struct rod_io *io);
	void *priv;
};

/* Start a request; io->done runs when it completes. Writes in write-through mode
 * complete after their data and metadata are durable (group commit). */
void rod_io_submit(struct rod_io *io);
/* Run a request and wait for it; returns io->result. done may be NULL. */
int rod_io_run(struct rod_io *io);

/* Synchronous conveniences over rod_io_run. */
int rod_vol_read(struct rod_vol *v, uint64_t off, void *buf, uint64_t len);
int rod_vol_write(struct rod_vol *v, uint64_t off, const void *buf, uint64_t len, unsigned flags);
int rod_vol_flush(struct rod_vol *v);
int rod_vol_zero(struct rod_vol *v, uint64_t off, uint64_t len);
int rod_vol_unmap(struct rod_vol *v, uint64_t off, uint64_t len);
int rod_vol_copy(struct rod_vol *src, uint64_t src_off, struct rod_vol *dst, uint64_t dst_off,
		 uint64_t len);

/* Mapped status for GET LBA STATUS: the extent starting at off (bytes) that is
 * uniformly mapped or deallocated, its length (up to max_len). Grain granularity
 * internally; reported exactly from off. */
int rod_vol_lba_status(struct rod_vol *v, uint64_t off, uint64_t max_len, bool *mapped,
		       uint64_t *len);

/* Space figures of one volume (see struct rod_space). */
int rod_vol_space(struct rod_store *s, const char *name, struct rod_space *out);

/* ---- Flatten (docs/engine.md "Flatten") -------------------------------------------
 * Range entries (clones, copies, reverts) recurse: a read through a clone of a clone of
 * a clone follows each level. Every entry records its depth; past DEPTH_SOFT (4) a volume
 * should be flattened, past the hard limit (16) new copies/clones materialise data.
 * Flatten rewrites the deep range entries of a volume's lineage (its snapshots share it)
 * as block entries referencing the chunks they resolve to (no data copied) and as range
 * entries to zeros/deallocated space, in batches through the normal commit path (crash
 * safe, logged for --rebuild-metadata), then drops the deep entries. Reads, writes,
 * snapshots and copies continue meanwhile; the volume reads the same throughout. */
#define ROD_FLATTEN_ALL 0x1   /* flatten every range entry, not only those past the soft limit */
/* Flatten volume (or snapshot: same lineage) name. progress (may be NULL) is called
 * between batches with bytes of range entries done and in total; non-zero from it stops
 * with -ECANCELED, leaving the volume correct (partly flattened). One flatten at a time
 * per process (a second call waits). -ENOENT unknown or destroyed volume. */
int rod_vol_flatten(struct rod_store *s, const char *name, unsigned flags,
		    int (*progress)(void *arg, uint64_t done, uint64_t total), void *arg);
/* Deepest range entry of the volume's lineage (0: none). -ENOENT unknown volume. */
int rod_vol_depth(struct rod_store *s, const char *name, uint32_t *depth);
/* True when the volume's lineage has a range entry deeper than the soft limit. */
bool rod_vol_needs_flatten(struct rod_store *s, const char *name);
/* Names of live volumes that need flattening (one per lineage: the volume, not its
 * snapshots). *names malloc'd array of malloc'd strings; free each, then the array. */
int rod_store_flatten_list(struct rod_store *s, char ***names, size_t *n);

/* ---- Replication support (lib/ctl/repl*.c; docs/protection.md) ----------------
 * Declared here first so the sender, the receiver and the engine agree; see the
 * implementation notes in lib/store for the costs. */

enum rod_diff_kind {
	ROD_DIFF_DATA = 0,  /* the grain holds data: read it (rod_vol_read_raw) */
	ROD_DIFF_ZERO = 1,  /* reads as zeros, mapped (WRITE SAME of zeros, zero range) */
	ROD_DIFF_UNMAP = 2, /* reads as zeros, deallocated */
};

/* Call fn for the extents, in increasing order, where snapshot `snap` differs from
 * snapshot `base` (an earlier snapshot of the same volume), starting at byte offset
 * start_off (for resuming). base NULL: every extent of snap that is not unmapped.
 * Extents are grain aligned (the last may end at the volume's size) and say what snap
 * holds there. When base and snap share a lineage the cost is proportional to what was
 * written between them (block and range entries of epochs (base, snap]), not to the
 * volume's size; otherwise every grain of snap is resolved and compared. An extent may
 * be reported although its grains hold the same data in both (a rewrite of the same
 * bytes): receivers must apply extents idempotently. fn returning non-zero stops the
 * walk, and rod_vol_diff returns that value. -ENOENT unknown name, -EINVAL base newer
 * than snap, or either not a snapshot. A base of another volume (e.g. the snapshot a
 * clone was made from) is accepted: grains are then compared by chunk id (the
 * "otherwise" case above). Costs: docs/engine.md "Replication support". */
int rod_vol_diff(struct rod_store *s, const char *base, const char *snap, uint64_t start_off,
		 int (*fn)(void *arg, uint64_t off, uint64_t len, enum rod_diff_kind kind),
		 void *arg);

#define ROD_RAW_COMP_NONE 0  /* data holds the 4096 plain bytes */
#define ROD_RAW_COMP_LZ4 1
#define ROD_RAW_COMP_ZSTD 2

/* One grain as stored, decrypted and checksum-verified but not decompressed. */
struct rod_grain_raw {
	enum rod_diff_kind kind;   /* DATA: the fields below are set; ZERO/UNMAP: nothing stored */
	uint64_t chunk_id;         /* stable identity of the stored chunk on this array: every
				    * grain deduplicated onto it has the same id; ids survive
				    * GC relocation and are never reused */
	uint8_t comp;              /* ROD_RAW_COMP_* */
	uint32_t len;              /* bytes in data: the compressed length, or 4096 */
	uint8_t data[ROD_GRAIN];
};
/* Read the grain at off (4 KiB aligned) of v as stored. -EBADMSG on a checksum failure. */
int rod_vol_read_raw(struct rod_vol *v, uint64_t off, struct rod_grain_raw *out);
/* Expand a ROD_RAW_COMP_* payload into 4096 bytes. -EINVAL when it does not expand to
 * exactly one grain. */
int rod_grain_decompress(uint8_t comp, const void *src, uint32_t len, void *dst4k);
/* Compress a grain with zstd level 1 into dst (room for ROD_GRAIN bytes): returns the
 * length, or 0 when it does not save at least 1/8 (send it uncompressed then). */
uint32_t rod_grain_compress_zstd(const void *grain, void *dst);

/* The fingerprint this array gives a 4 KiB grain (HMAC-SHA-256 under its secret). */
void rod_store_fingerprint(struct rod_store *s, const void *grain, uint8_t fp[32]);
/* Write the grain at off (4 KiB aligned) as a reference to the stored chunk with this
 * fingerprint, exactly like a dedupe hit: no data is written. -ENOENT when no live chunk
 * has it (the caller then writes the data), also whenever dedupe is off (store option,
 * or the volume's switch): the fingerprint table is not kept then. Durable like
 * rod_vol_write with flags. */
int rod_vol_write_fp(struct rod_vol *v, uint64_t off, const uint8_t fp[32], unsigned flags);

/* Names of replica volumes on a replication target are "ARRAY:NAME" (both parts valid
 * names, DESIGN.md): the engine accepts them in rod_vol_create/snapshot/clone/rename; the
 * control plane refuses ':' in names given by users. */

#endif

#include "rod/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

static enum rod_log_level g_level = ROD_LOG_INFO;
static int g_level_init;
static int g_syslog;

static void level_from_env(void)
{
	const char *e = getenv("ROD_LOG");
	g_level_init = 1;
	if (!e)
		return;
	if (!strcmp(e, "debug"))
		g_level = ROD_LOG_DEBUG;
	else if (!strcmp(e, "info"))
		g_level = ROD_LOG_INFO;
	else if (!strcmp(e, "warn"))
		g_level = ROD_LOG_WARN;
	else if (!strcmp(e, "err"))
		g_level = ROD_LOG_ERR;
}

void rod_log_set_level(enum rod_log_level lvl)
{
	g_level_init = 1;
	g_level = lvl;
}

enum rod_log_level rod_log_get_level(void)
{
	if (!g_level_init)
		level_from_env();
	return g_level;
}

void rod_log_use_syslog(const char *ident)
{
	openlog(ident, LOG_PID, LOG_DAEMON);
	g_syslog = 1;
}

void rod_log(enum rod_log_level lvl, const char *fmt, ...)
{
	static const char *const names[] = { "error", "warning", "info", "debug" };
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char msg[1024];
	va_list ap;

	if (lvl > rod_log_get_level())
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (g_syslog) {
		syslog(prio[lvl], "%s", msg);
		return;
	}
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%02d:%02d:%02d.%03ld %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, names[lvl], msg);
}

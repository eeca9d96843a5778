/* Logging: one line per message to stderr (or syslog when daemonised). */
#ifndef ROD_LOG_H
#define ROD_LOG_H

enum rod_log_level { ROD_LOG_ERR = 0, ROD_LOG_WARN, ROD_LOG_INFO, ROD_LOG_DEBUG };

/* Messages above this level are dropped; default INFO, or ROD_LOG=debug|info|warn|err. */
void rod_log_set_level(enum rod_log_level lvl);
enum rod_log_level rod_log_get_level(void);
/* Send messages to syslog instead of stderr (used after daemonising). */
void rod_log_use_syslog(const char *ident);

void rod_log(enum rod_log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define rod_err(...)   rod_log(ROD_LOG_ERR, __VA_ARGS__)
#define rod_warn(...)  rod_log(ROD_LOG_WARN, __VA_ARGS__)
#define rod_info(...)  rod_log(ROD_LOG_INFO, __VA_ARGS__)
#define rod_debug(...) do { if (rod_log_get_level() >= ROD_LOG_DEBUG) \
	rod_log(ROD_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif

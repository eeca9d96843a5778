/* Error replies of the control plane's methods (lib/ctl internal). */
#ifndef ROD_CTL_ERR_H
#define ROD_CTL_ERR_H

/* Sets *msg to a malloc'd message (NULL if out of memory) and returns code
 * (a ROD_CTL_E* value), so a method can `return ctl_fail(msg, code, ...)`. */
int ctl_fail(char **msg, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

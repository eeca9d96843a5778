/* Initiator name patterns and the array's target name. Pure functions, no store. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rod/ctl.h"
#include "rod/util.h"

bool rod_iqn_is_glob(const char *pat)
{
	return strpbrk(pat, "*?") != NULL;
}

/* RFC 3720 3.2.6.2: after stringprep, iSCSI names hold lowercase ASCII letters,
 * digits, '-', '.', ':' (we accept no other Unicode). */
static bool iqn_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
	       ch == ':';
}

bool rod_iqn_pattern_valid(const char *pat)
{
	size_t n = strlen(pat);
	if (n == 0 || n >= ROD_IQN_MAX)
		return false;
	for (const char *p = pat; *p; p++)
		if (!iqn_char(*p) && *p != '*' && *p != '?')
			return false;
	if (rod_iqn_is_glob(pat))
		return true;
	return n > 4 && (!strncmp(pat, "iqn.", 4) || !strncmp(pat, "eui.", 4) ||
			 !strncmp(pat, "naa.", 4));
}

static bool match_from(const char *p, const char *s)
{
	/* Iterative glob match with single backtrack point (enough for '*' and '?'). */
	const char *star = NULL, *resume = NULL;
	while (*s) {
		if (*p == '*') {
			star = p++;
			resume = s;
		} else if (*p == '?' || (*p && tolower((unsigned char)*p) == tolower((unsigned char)*s))) {
			p++;
			s++;
		} else if (star) {
			p = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

bool rod_iqn_match(const char *pat, const char *name)
{
	return match_from(pat, name);
}

long rod_iqn_rank(const char *pat, const char *name)
{
	if (!rod_iqn_match(pat, name))
		return -1;
	if (!rod_iqn_is_glob(pat))
		return 1000000;
	return (long)strlen(pat);
}

/* Two globs overlap when some string matches both: a walk over both patterns where a
 * '*' may absorb one character of the other side (or nothing). Memoised on (i, j). */
struct overlap_ctx {
	const char *a, *b;
	size_t na, nb;
	signed char *memo;  /* -1 unknown, 0/1 */
};

static bool overlap(struct overlap_ctx *c, size_t i, size_t j)
{
	signed char *m = &c->memo[i * (c->nb + 1) + j];
	if (*m >= 0)
		return *m;
	bool r;
	if (i == c->na && j == c->nb)
		r = true;
	else if (i < c->na && c->a[i] == '*')
		r = overlap(c, i + 1, j) || (j < c->nb && overlap(c, i, j + 1));
	else if (j < c->nb && c->b[j] == '*')
		r = overlap(c, i, j + 1) || (i < c->na && overlap(c, i + 1, j));
	else if (i == c->na || j == c->nb)
		r = false;
	else if (c->a[i] == '?' || c->b[j] == '?' ||
		 tolower((unsigned char)c->a[i]) == tolower((unsigned char)c->b[j]))
		r = overlap(c, i + 1, j + 1);
	else
		r = false;
	*m = r;
	return r;
}

bool rod_iqn_globs_overlap(const char *a, const char *b)
{
	struct overlap_ctx c = { a, b, strlen(a), strlen(b), NULL };
	c.memo = malloc((c.na + 1) * (c.nb + 1));
	if (!c.memo)
		return true; /* refuse rather than risk an ambiguous tie */
	memset(c.memo, -1, (c.na + 1) * (c.nb + 1));
	bool r = overlap(&c, 0, 0);
	free(c.memo);
	return r;
}

void rod_array_name_from_host(const char *host, char *out, size_t len)
{
	size_t n = 0;
	if (len == 0)
		return;
	for (const char *p = host; *p && *p != '.' && n + 1 < len && n < 63; p++) {
		unsigned char ch = (unsigned char)*p;
		out[n++] = isalnum(ch) ? (char)tolower(ch) : '-';
	}
	out[n] = '\0';
	if (!rod_name_valid(out))
		snprintf(out, len, "rodstore");
}

void rod_target_iqn(const char *array_name, char *out, size_t len)
{
	size_t n = (size_t)snprintf(out, len, "%s", ROD_TARGET_IQN_PREFIX);
	for (const char *p = array_name; *p && n + 1 < len; p++) {
		unsigned char ch = (unsigned char)*p;
		out[n++] = ch == '_' ? '-' : (char)tolower(ch);
	}
	if (n < len)
		out[n] = '\0';
}

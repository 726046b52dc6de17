/* SPDX-License-Identifier: MIT
 * common.h - error codes and small helpers shared by every subsystem.
 *
 * Functions return int: 0 is success, a negative TERN_E* value is a failure.
 * Where a failure comes from the OS, the value is the negated errno.
 */
#ifndef TERN_COMMON_H
#define TERN_COMMON_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define TERN_OK     0
#define TERN_ENOMEM (-ENOMEM)
#define TERN_EINVAL (-EINVAL)
#define TERN_EAGAIN (-EAGAIN)
#define TERN_ENOENT (-ENOENT)
#define TERN_EEXIST (-EEXIST)
#define TERN_EIO    (-EIO)
#define TERN_EPERM  (-EPERM)
#define TERN_ERANGE (-ERANGE)

#define TERN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TERN_UNUSED(x)    ((void)(x))

/* Out of memory on a path that cannot report it aborts with a log line,
 * as redis' zmalloc does; everything else returns TERN_ENOMEM. */
void *tern_xmalloc(size_t n);
void *tern_xcalloc(size_t count, size_t n);
void *tern_xrealloc(void *p, size_t n);
char *tern_xstrdup(const char *s);
char *tern_xstrndup(const char *s, size_t n);

/* Writes a printf-style message into a caller's error buffer (NULL or
 * size 0: nothing). The convention for functions that report why they
 * failed: int return plus (err, errlen). */
void tern_format_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

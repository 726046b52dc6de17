/* SPDX-License-Identifier: MIT
 * log.h - leveled logging to stderr.
 *
 * Lines look like "2026-11-24T03:25:54.123Z info c2s#42 message". The
 * connection id (c2s#42) ties the lines of one connection together. Never
 * log passwords or SASL payloads. The level is process-wide, set at start
 * and on SIGHUP from the loop thread only; it is the one piece of mutable
 * global state, read-only from other threads.
 */
#ifndef TERN_LOG_H
#define TERN_LOG_H

typedef enum { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 } log_level_t;

/* Parses "error", "warn", "info", "debug"; returns -1 if unknown. */
int log_level_parse(const char *s);
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* tag: subsystem or connection id, e.g. "c2s#42", "main"; may be NULL. */
void log_msg(log_level_t level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(tag, ...) log_msg(LOG_ERROR, tag, __VA_ARGS__)
#define log_warn(tag, ...)  log_msg(LOG_WARN, tag, __VA_ARGS__)
#define log_info(tag, ...)                                                                         \
    do {                                                                                           \
        if (log_get_level() >= LOG_INFO)                                                           \
            log_msg(LOG_INFO, tag, __VA_ARGS__);                                                   \
    } while (0)
#define log_debug(tag, ...)                                                                        \
    do {                                                                                           \
        if (log_get_level() >= LOG_DEBUG)                                                          \
            log_msg(LOG_DEBUG, tag, __VA_ARGS__);                                                  \
    } while (0)

#endif

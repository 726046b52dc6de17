/* SPDX-License-Identifier: MIT
 * frame.c - see frame.h.
 */
#include "xml/frame.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "xml/ns.h"

/* Whether the start tag [tag, end) carries the attribute name (" name="). */
static bool tag_has_attr(const char *tag, const char *end, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = tag; p + n + 2 <= end; p++)
        if (p[0] == ' ' && memcmp(p + 1, name, n) == 0 && p[n + 1] == '=')
            return true;
    return false;
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return strlen(want) == n && memcmp(name, want, n) == 0;
}

/* Emits [el, el + len) with the declarations its start tag lacks. */
static void emit(const char *el, size_t len, xml_frame_cb cb, void *ud)
{
    const char *tag_end = memchr(el, '>', len);
    size_t name_len = strcspn(el + 1, " />");
    const char *name = el + 1;
    const char *decl = NULL;
    if (name_len > 7 && memcmp(name, "stream:", 7) == 0) {
        if (!tag_has_attr(el, tag_end, "xmlns:stream"))
            decl = " xmlns:stream='" NS_STREAM "'";
    } else if (name_is(name, name_len, "message") || name_is(name, name_len, "presence") ||
               name_is(name, name_len, "iq")) {
        if (!tag_has_attr(el, tag_end, "xmlns"))
            decl = " xmlns='" NS_CLIENT "'";
    }
    if (!decl) {
        cb(ud, el, len);
        return;
    }
    size_t dl = strlen(decl), at = 1 + name_len;
    char *out = tern_xmalloc(len + dl);
    memcpy(out, el, at);
    memcpy(out + at, decl, dl);
    memcpy(out + at + dl, el + at, len - at);
    cb(ud, out, len + dl);
    free(out);
}

/* Scans data for complete top-level elements; returns the offset where an
 * unfinished one starts (len when none). */
static size_t scan(const char *data, size_t len, xml_frame_cb cb, void *ud)
{
    size_t i = 0, start = 0;
    int depth = 0;
    while (i < len) {
        if (depth == 0) {
            /* Between elements: skip text (whitespace) up to the next tag. */
            const char *lt = memchr(data + i, '<', len - i);
            if (!lt)
                return len;
            i = (size_t)(lt - data);
            start = i;
        }
        const char *gt = memchr(data + i, '>', len - i);
        if (!gt)
            return depth == 0 ? i : start;
        size_t end = (size_t)(gt - data) + 1;
        if (data[i + 1] == '?') {
            /* <?xml ...?>: not an element */
        } else if (data[i + 1] == '/') {
            depth--;
        } else if (data[end - 2] != '/') {
            depth++;
        }
        i = end;
        if (depth <= 0) {
            if (data[start + 1] != '?' && data[start + 1] != '/')
                emit(data + start, end - start, cb, ud);
            depth = 0;
        } else {
            /* Inside an element: jump to its next tag. */
            const char *lt = memchr(data + i, '<', len - i);
            if (!lt)
                return start;
            i = (size_t)(lt - data);
        }
    }
    return depth == 0 ? len : start;
}

void xml_framer_feed(xml_framer_t *f, const char *data, size_t len, xml_frame_cb cb, void *ud)
{
    if (len == 0)
        return;
    if (f->len == 0) {
        size_t rest = scan(data, len, cb, ud);
        data += rest;
        len -= rest;
    } else {
        if (f->len + len > f->cap) {
            size_t cap = f->cap ? f->cap : 1024;
            while (cap < f->len + len)
                cap *= 2;
            f->buf = tern_xrealloc(f->buf, cap);
            f->cap = cap;
        }
        memcpy(f->buf + f->len, data, len);
        f->len += len;
        size_t rest = scan(f->buf, f->len, cb, ud);
        memmove(f->buf, f->buf + rest, f->len - rest);
        f->len -= rest;
        return;
    }
    if (len) {
        if (len > f->cap) {
            f->buf = tern_xrealloc(f->buf, len);
            f->cap = len;
        }
        memcpy(f->buf, data, len);
        f->len = len;
    }
}

void xml_framer_free(xml_framer_t *f)
{
    free(f->buf);
    f->buf = NULL;
    f->len = f->cap = 0;
}

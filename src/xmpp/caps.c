/* SPDX-License-Identifier: MIT
 * caps.c - XEP-0115 entity capabilities: the verification string of a
 * disco#info result (§5.1, with the data form rules of §5.4), used for the
 * server's own caps and to check what clients announce.
 */
#include "caps.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../core/common.h"
#include "../xml/ns.h"

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf_t; /* a growable string; buf is malloc'd and owned by the user */

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->buf = tern_xrealloc(b->buf, cap);
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s)
{
    if (s)
        sb_add(b, s, strlen(s));
}

static void sb_item(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
    sb_add(b, "<", 1);
}

/* §5.1 sorts with i;octet: strcmp compares UTF-8 bytewise. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct {
    const char **v;
    size_t n, cap;
} strs_t;

static void strs_push(strs_t *s, const char *x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->v = tern_xrealloc(s->v, s->cap * sizeof(*s->v));
    }
    s->v[s->n++] = x;
}

static void strs_sort_append(strs_t *s, sbuf_t *b)
{
    if (s->n)
        qsort(s->v, s->n, sizeof(*s->v), cmp_str);
    for (size_t i = 0; i < s->n; i++)
        sb_item(b, s->v[i]);
}

static const char *form_type(const xml_node_t *x)
{
    for (xml_node_t *f = xml_node_child(x, "field", NS_DATA); f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *var = xml_node_attr(f, "var");
        const char *type = xml_node_attr(f, "type");
        if (var && strcmp(var, "FORM_TYPE") == 0) {
            xml_node_t *v = xml_node_child(f, "value", NS_DATA);
            /* §5.4: a FORM_TYPE that is not hidden makes the form ignored. */
            return v && type && strcmp(type, "hidden") == 0 ? xml_node_text(v) : NULL;
        }
    }
    return NULL;
}

typedef struct {
    const char *type;
    const xml_node_t *x;
} form_ref_t;

static int cmp_form(const void *a, const void *b)
{
    return strcmp(((const form_ref_t *)a)->type, ((const form_ref_t *)b)->type);
}

typedef struct {
    const char *var;
    const xml_node_t *field;
} field_ref_t;

static int cmp_field(const void *a, const void *b)
{
    return strcmp(((const field_ref_t *)a)->var, ((const field_ref_t *)b)->var);
}

static void append_form(sbuf_t *b, const form_ref_t *form)
{
    sb_item(b, form->type);
    field_ref_t *fields = NULL;
    size_t n = 0;
    for (xml_node_t *f = xml_node_child(form->x, "field", NS_DATA); f;
         f = xml_node_next(f, "field", NS_DATA)) {
        const char *var = xml_node_attr(f, "var");
        if (!var || strcmp(var, "FORM_TYPE") == 0)
            continue;
        fields = tern_xrealloc(fields, (n + 1) * sizeof(*fields));
        fields[n++] = (field_ref_t){var, f};
    }
    if (n)
        qsort(fields, n, sizeof(*fields), cmp_field);
    for (size_t i = 0; i < n; i++) {
        sb_item(b, fields[i].var);
        strs_t values = {0};
        for (xml_node_t *v = xml_node_child(fields[i].field, "value", NS_DATA); v;
             v = xml_node_next(v, "value", NS_DATA))
            strs_push(&values, xml_node_text(v));
        strs_sort_append(&values, b);
        free(values.v);
    }
    free(fields);
}

int caps_ver_sha1(const xml_node_t *query, char *out, size_t outlen)
{
    sbuf_t b = {0};
    sb_add(&b, "", 0); /* a string, even for a query with nothing in it */
    strs_t ids = {0}, feats = {0};
    form_ref_t *forms = NULL;
    size_t nforms = 0;
    for (xml_node_t *c = xml_node_first_element(query); c; c = xml_node_next(c, NULL, NULL)) {
        if (xml_node_is(c, "identity", NS_DISCO_INFO)) {
            const char *cat = xml_node_attr(c, "category"), *type = xml_node_attr(c, "type");
            const char *lang = xml_node_attr(c, "xml:lang"), *name = xml_node_attr(c, "name");
            /* category/type/lang/name, absent parts empty */
            sbuf_t id = {0};
            sb_str(&id, cat);
            sb_add(&id, "/", 1);
            sb_str(&id, type);
            sb_add(&id, "/", 1);
            sb_str(&id, lang);
            sb_add(&id, "/", 1);
            sb_str(&id, name);
            strs_push(&ids, id.buf); /* freed below, with the list */
        } else if (xml_node_is(c, "feature", NS_DISCO_INFO)) {
            const char *var = xml_node_attr(c, "var");
            if (var)
                strs_push(&feats, var);
        } else if (xml_node_is(c, "x", NS_DATA)) {
            const char *ft = form_type(c);
            if (!ft)
                continue;
            forms = tern_xrealloc(forms, (nforms + 1) * sizeof(*forms));
            forms[nforms++] = (form_ref_t){ft, c};
        }
    }
    strs_sort_append(&ids, &b);
    strs_sort_append(&feats, &b);
    if (nforms)
        qsort(forms, nforms, sizeof(*forms), cmp_form);
    for (size_t i = 0; i < nforms; i++)
        append_form(&b, &forms[i]);
    for (size_t i = 0; i < ids.n; i++)
        free((char *)ids.v[i]);
    free(ids.v);
    free(feats.v);
    free(forms);

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int rc = EVP_Digest(b.buf, b.len, md, &mdlen, EVP_sha1(), NULL) == 1 ? 0 : TERN_EIO;
    free(b.buf);
    if (rc != 0)
        return rc;
    /* Base64 needs 4 bytes per 3 and a NUL: 29 for SHA-1's 20. */
    if (outlen < ((size_t)mdlen + 2) / 3 * 4 + 1)
        return TERN_EIO;
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
    return 0;
}

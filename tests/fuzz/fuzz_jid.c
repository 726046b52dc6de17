/* SPDX-License-Identifier: MIT
 * fuzz_jid.c - libFuzzer target for XMPP address parsing.
 *
 * Stored JIDs are compared byte for byte, so normalisation has to be a fixed
 * point: whatever jid_parse accepts must serialise to a string that parses
 * back to the same three parts and the same string. The same holds for
 * jid_from_parts fed with the parsed parts and for each per-part prep
 * function. Any difference aborts so that libFuzzer records the input.
 */
#include "xmpp/jid.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what, const char *in)
{
    if (!ok) {
        fprintf(stderr, "fuzz_jid: %s for input \"%s\"\n", what, in);
        abort();
    }
}

static void check_prep(int (*prep)(const char *, char **), const char *part, const char *what)
{
    char *out = NULL;

    if (!part)
        return;
    check(prep(part, &out) == 0, what, part);
    check(strcmp(out, part) == 0, what, part);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    jid_t j, again, parts;
    char *s, *s2;

    if (!in)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';

    if (jid_parse(in, &j) != 0) {
        free(in);
        return 0;
    }
    s = jid_to_string(&j);
    check(s != NULL, "no string form", in);
    check(jid_parse(s, &again) == 0, "re-parse rejected", in);
    check(jid_equal(&j, &again), "re-parse changed the parts", in);
    s2 = jid_to_string(&again);
    check(strcmp(s, s2) == 0, "re-parse changed the string", in);

    check(jid_from_parts(j.local, j.domain, j.resource, &parts) == 0, "jid_from_parts rejected",
          in);
    check(jid_equal(&j, &parts), "jid_from_parts changed the parts", in);

    check_prep(jid_prep_local, j.local, "localpart not a fixed point");
    check_prep(jid_prep_domain, j.domain, "domainpart not a fixed point");
    check_prep(jid_prep_resource, j.resource, "resourcepart not a fixed point");

    free(s2);
    free(s);
    jid_clear(&parts);
    jid_clear(&again);
    jid_clear(&j);
    free(in);
    return 0;
}

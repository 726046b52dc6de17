/* loadgen: latency histogram, /proc readers, clock and number formatting. */
#include "loadgen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void hist_add(struct hist *h, uint64_t v)
{
    size_t idx;
    if (v < HIST_SUB) {
        idx = (size_t)v;
    } else {
        int msb = 63 - __builtin_clzll(v);
        int shift = msb - 6; /* HIST_SUB == 2^6 */
        idx = (size_t)(shift + 1) * HIST_SUB + (size_t)((v >> shift) & (HIST_SUB - 1));
    }
    if (idx >= HIST_N)
        idx = HIST_N - 1;
    h->b[idx]++;
    if (!h->n || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->n++;
    h->sum += v;
}

void hist_merge(struct hist *into, const struct hist *from)
{
    if (!from->n)
        return;
    for (size_t i = 0; i < HIST_N; i++)
        into->b[i] += from->b[i];
    if (!into->n || from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
    into->n += from->n;
    into->sum += from->sum;
}

/* Middle of bucket idx: its lower bound plus half its width. */
static double hist_bucket_mid(size_t idx)
{
    if (idx < HIST_SUB)
        return (double)idx;
    size_t shift = idx / HIST_SUB - 1;
    uint64_t lo = ((uint64_t)HIST_SUB + idx % HIST_SUB) << shift;
    return (double)lo + (double)(1ull << shift) / 2.0;
}

double hist_pct(const struct hist *h, double p)
{
    if (!h->n)
        return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->n);
    if (rank < 1)
        rank = 1;
    uint64_t acc = 0;
    for (size_t i = 0; i < HIST_N; i++) {
        acc += h->b[i];
        if (acc >= rank) {
            double m = hist_bucket_mid(i);
            if (m > (double)h->max)
                m = (double)h->max;
            if (m < (double)h->min)
                m = (double)h->min;
            return m;
        }
    }
    return (double)h->max;
}

int read_procmem(int pid, struct procmem *m)
{
    char path[64], line[256];
    m->rss_kb = m->pss_kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            m->rss_kb = strtol(line + 6, NULL, 10);
    fclose(f);
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
    f = fopen(path, "r");
    if (f) {
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "Pss:", 4) == 0)
                m->pss_kb = strtol(line + 4, NULL, 10);
        fclose(f);
    }
    return m->rss_kb < 0 ? -1 : 0;
}

uint64_t read_proccpu(int pid)
{
    if (pid <= 0)
        return 0;
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    /* The command name may contain spaces; fields are counted after ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    unsigned long long ut = 0, stime = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14) {
            ut = strtoull(tok, NULL, 10);
        } else if (field == 15) {
            stime = strtoull(tok, NULL, 10);
            break;
        }
    }
    return ut + stime;
}

double ticks_to_us(uint64_t t)
{
    return (double)t * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

size_t fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

void xml_esc(char *out, size_t cap, const char *in)
{
    size_t k = 0;
    for (; *in && k + 7 < cap; in++) {
        const char *r = NULL;
        switch (*in) {
        case '&':
            r = "&amp;";
            break;
        case '<':
            r = "&lt;";
            break;
        case '>':
            r = "&gt;";
            break;
        case '\'':
            r = "&apos;";
            break;
        case '"':
            r = "&quot;";
            break;
        }
        if (r) {
            size_t l = strlen(r);
            memcpy(out + k, r, l);
            k += l;
        } else {
            out[k++] = *in;
        }
    }
    out[k] = 0;
}

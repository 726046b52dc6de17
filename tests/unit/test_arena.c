/* SPDX-License-Identifier: MIT
 * test_arena.c - unit tests for the per-parser memory arena (src/xml/arena.c).
 *
 * The arena sits below expat, where ASan cannot see it, so these tests
 * check contents explicitly: every live block carries a pattern derived
 * from its slot and is verified after every operation that could move or
 * overlap it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "xml/arena.h"

#include <stdlib.h>
#include <string.h>

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed * 31u + i * 7u);
}

static void check(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed * 31u + i * 7u))
            fail_msg("block %u corrupted at byte %zu of %zu", seed, i, n);
}

static void test_alignment_and_reuse_of_top(void **state)
{
    xml_arena_t *a = xml_arena_new();
    assert_non_null(a);
    assert_int_equal(xml_arena_mapped(a), 0);
    void *x = xml_arena_alloc(a, 1);
    void *y = xml_arena_alloc(a, 100);
    assert_int_equal((uintptr_t)x % 16, 0);
    assert_int_equal((uintptr_t)y % 16, 0);
    assert_true(xml_arena_mapped(a) > 0);
    /* The newest block grows in place and is reused once freed. */
    assert_ptr_equal(xml_arena_realloc(a, y, 1000), y);
    xml_arena_free(a, y);
    assert_ptr_equal(xml_arena_alloc(a, 50), y);
    xml_arena_release(a);
    assert_int_equal(xml_arena_mapped(a), 0);
    assert_non_null(xml_arena_alloc(a, 10)); /* usable after release */
    xml_arena_destroy(a);
}

static void test_large_blocks(void **state)
{
    xml_arena_t *a = xml_arena_new();
    unsigned char *big = xml_arena_alloc(a, 100000);
    assert_non_null(big);
    fill(big, 100000, 1);
    unsigned char *small = xml_arena_alloc(a, 64);
    fill(small, 64, 2);
    big = xml_arena_realloc(a, big, 1000000);
    assert_non_null(big);
    check(big, 100000, 1);
    check(small, 64, 2);
    assert_true(xml_arena_mapped(a) >= 1000000);
    xml_arena_free(a, big);
    assert_true(xml_arena_mapped(a) < 300000);
    /* A small block that outgrows the chunk limit moves to its own map. */
    unsigned char *grow = xml_arena_realloc(a, small, 50000);
    check(grow, 64, 2);
    xml_arena_destroy(a);
}

/* Random operations against a shadow table of sizes and seeds. */
static void test_random_operations(void **state)
{
    enum { SLOTS = 64, ROUNDS = 20000 };
    xml_arena_t *a = xml_arena_new();
    unsigned char *ptr[SLOTS] = {0};
    size_t len[SLOTS] = {0};
    unsigned seed[SLOTS] = {0};
    srand(12345);
    for (unsigned round = 0; round < ROUNDS; round++) {
        int i = rand() % SLOTS;
        int op = rand() % 3;
        size_t n = (size_t)(rand() % 4 == 0 ? rand() % 40000 : rand() % 600) + 1;
        if (op == 0 && !ptr[i]) {
            ptr[i] = xml_arena_alloc(a, n);
            assert_non_null(ptr[i]);
            len[i] = n;
            seed[i] = round;
            fill(ptr[i], n, round);
        } else if (op == 1 && ptr[i]) {
            unsigned char *q = xml_arena_realloc(a, ptr[i], n);
            assert_non_null(q);
            check(q, n < len[i] ? n : len[i], seed[i]);
            ptr[i] = q;
            len[i] = n;
            seed[i] = round;
            fill(q, n, round);
        } else if (ptr[i]) {
            check(ptr[i], len[i], seed[i]);
            xml_arena_free(a, ptr[i]);
            ptr[i] = NULL;
        }
        if (round % 1000 == 999) {
            for (int j = 0; j < SLOTS; j++)
                if (ptr[j])
                    check(ptr[j], len[j], seed[j]);
        }
        if (round % 5000 == 4999) {
            xml_arena_release(a);
            memset(ptr, 0, sizeof(ptr));
        }
    }
    xml_arena_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_reuse_of_top),
        cmocka_unit_test(test_large_blocks),
        cmocka_unit_test(test_random_operations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT
 * test_throttle.c - per-key event counters with windows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "core/throttle.h"

static void test_limit_and_window(void **state)
{
    throttle_t t;
    throttle_init(&t);
    assert_false(throttle_exceeded(&t, "1.2.3.4", 3, 60, 1000));
    for (int i = 0; i < 3; i++)
        throttle_hit(&t, "1.2.3.4", 60, 1000 + (uint64_t)i);
    assert_true(throttle_exceeded(&t, "1.2.3.4", 3, 60, 2000));
    assert_false(throttle_exceeded(&t, "1.2.3.4", 4, 60, 2000));
    assert_false(throttle_exceeded(&t, "5.6.7.8", 3, 60, 2000)); /* other keys unaffected */
    assert_false(throttle_exceeded(&t, "1.2.3.4", 0, 60, 2000)); /* 0 = no limit */
    /* the window is over: counting starts again */
    assert_false(throttle_exceeded(&t, "1.2.3.4", 3, 60, 1000 + 60001));
    throttle_hit(&t, "1.2.3.4", 60, 1000 + 60001);
    assert_false(throttle_exceeded(&t, "1.2.3.4", 2, 60, 1000 + 60002));
    throttle_free(&t);
}

static void test_prune(void **state)
{
    throttle_t t;
    throttle_init(&t);
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        throttle_hit(&t, key, 10, i < 50 ? 0 : 20000);
    }
    assert_int_equal(hashmap_count(&t.map), 100);
    throttle_prune(&t, 10, 20001); /* at most 64 per call */
    throttle_prune(&t, 10, 20001);
    assert_int_equal(hashmap_count(&t.map), 50);
    throttle_hit(&t, "k70", 10, 20002);
    assert_int_equal(hashmap_count(&t.map), 50);
    throttle_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_and_window),
        cmocka_unit_test(test_prune),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: MIT
 * storage.c - driver lookup and the asynchronous storage queue.
 *
 * Blocking database calls run on one dedicated thread that owns the driver
 * handle; the event loop never waits for the disk. Jobs go to the thread
 * through a mutex+condvar FIFO, and finished jobs come back through a second
 * FIFO whose arrival is signalled to the loop with a uv_async_t, so
 * completions run on the loop thread in submission order. Every job record
 * is owned by the queue from storage_submit until its completion has run.
 *
 * The async handle is only referenced while jobs are outstanding, so an idle
 * storage queue does not keep uv_run alive, and a busy one keeps the loop
 * running until its completions have been delivered.
 */
#include "storage.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../core/common.h"
#include "../core/log.h"

#define TAG "storage"

typedef struct storage_job {
    storage_job_fn fn;
    storage_done_cb done;
    void *arg;
    int result;
    struct storage_job *next;
} storage_job_t;

typedef struct {
    storage_job_t *head;
    storage_job_t *tail;
} job_fifo_t;

struct storage {
    uv_loop_t *loop;
    uv_async_t async;
    pthread_t loop_thread;
    size_t outstanding; /* submitted, completion not yet run; loop thread only */

    const storage_driver_t *drv;
    char *dsn;
    pthread_t thread;

    /* Everything below is shared with the storage thread, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* storage thread waits: jobs queued, or quit */
    pthread_cond_t done_cv; /* storage_start/stop wait: open result, job finished */
    job_fifo_t pending;
    job_fifo_t finished;
    bool busy;      /* the storage thread is running a job */
    bool quit;      /* the storage thread should exit once pending is empty */
    bool closed;    /* storage_stop is past the point where jobs can be accepted */
    int open_state; /* 0 opening, 1 open, -1 failed */
    storage_db_t *db;
    char open_err[256];
};

static const storage_driver_t *const drivers[] = {&storage_sqlite_driver};

int storage_user_exists(const storage_driver_t *drv, storage_db_t *db, const char *host,
                        const char *user)
{
    scram_creds_t creds;
    int rc = drv->user_get(db, host, user, &creds);
    explicit_bzero(&creds, sizeof(creds));
    return rc;
}

const storage_driver_t *storage_driver_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < TERN_ARRAY_LEN(drivers); i++)
        if (strcmp(drivers[i]->name, name) == 0)
            return drivers[i];
    return NULL;
}

static void fifo_push(job_fifo_t *q, storage_job_t *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

static storage_job_t *fifo_pop(job_fifo_t *q)
{
    storage_job_t *j = q->head;
    if (j) {
        q->head = j->next;
        if (!q->head)
            q->tail = NULL;
        j->next = NULL;
    }
    return j;
}

static void *storage_thread(void *p)
{
    storage_t *st = p;

    /* The handle is opened here, not by the caller, so that the
     * connection is created and used by the same thread. */
    char err[sizeof(st->open_err)] = "";
    storage_db_t *db = st->drv->open(st->dsn, err, sizeof(err));
    pthread_mutex_lock(&st->mu);
    st->db = db;
    st->open_state = db ? 1 : -1;
    if (!db)
        snprintf(st->open_err, sizeof(st->open_err), "%s", err[0] ? err : "cannot open storage");
    pthread_cond_broadcast(&st->done_cv);
    if (!db) {
        pthread_mutex_unlock(&st->mu);
        return NULL;
    }

    for (;;) {
        while (!st->pending.head && !st->quit)
            pthread_cond_wait(&st->work_cv, &st->mu);
        storage_job_t *j = fifo_pop(&st->pending);
        if (!j)
            break; /* quit with nothing left to run */
        st->busy = true;
        pthread_mutex_unlock(&st->mu);

        j->result = j->fn(st->drv, db, j->arg);

        pthread_mutex_lock(&st->mu);
        st->busy = false;
        fifo_push(&st->finished, j);
        pthread_cond_broadcast(&st->done_cv);
        /* Sent under the lock so storage_stop, which takes the lock before
         * joining and closing the handle, can never race with a send. */
        uv_async_send(&st->async);
    }
    pthread_mutex_unlock(&st->mu);
    st->drv->close(db);
    return NULL;
}

/* Runs one finished job's completion on the loop thread; false if none.
 * One at a time, so that a completion calling storage_stop leaves nothing
 * half-taken for the caller of this function to run afterwards. */
static bool run_one_completion(storage_t *st)
{
    pthread_mutex_lock(&st->mu);
    storage_job_t *j = fifo_pop(&st->finished);
    pthread_mutex_unlock(&st->mu);
    if (!j)
        return false;
    storage_done_cb done = j->done;
    void *arg = j->arg;
    int result = j->result;
    free(j);
    if (--st->outstanding == 0)
        uv_unref((uv_handle_t *)&st->async);
    if (done)
        done(arg, result);
    return true;
}

static void on_async(uv_async_t *h)
{
    storage_t *st = h->data;
    while (run_one_completion(st))
        ;
}

static void storage_free(storage_t *st)
{
    pthread_cond_destroy(&st->work_cv);
    pthread_cond_destroy(&st->done_cv);
    pthread_mutex_destroy(&st->mu);
    free(st->dsn);
    free(st);
}

static void on_close(uv_handle_t *h)
{
    storage_free(h->data);
}

storage_t *storage_start(struct uv_loop_s *loop, const storage_driver_t *drv, const char *dsn,
                         char *err, size_t errlen)
{
    storage_t *st = tern_xcalloc(1, sizeof(*st));
    st->loop = loop;
    st->loop_thread = pthread_self();
    st->drv = drv;
    st->dsn = tern_xstrdup(dsn ? dsn : "");
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->work_cv, NULL);
    pthread_cond_init(&st->done_cv, NULL);

    int rc = pthread_create(&st->thread, NULL, storage_thread, st);
    if (rc != 0) {
        tern_format_err(err, errlen, "storage: cannot start thread: %s", strerror(rc));
        storage_free(st);
        return NULL;
    }
    pthread_mutex_lock(&st->mu);
    while (st->open_state == 0)
        pthread_cond_wait(&st->done_cv, &st->mu);
    bool ok = st->open_state > 0;
    pthread_mutex_unlock(&st->mu);
    if (!ok) {
        pthread_join(st->thread, NULL);
        tern_format_err(err, errlen, "%s", st->open_err);
        storage_free(st);
        return NULL;
    }

    /* Initialised only once the driver is open, so that failures above
     * have no handle to close asynchronously. The thread cannot send
     * before this: it only sends after a job, and none can be submitted
     * before storage_start returns. */
    rc = uv_async_init(loop, &st->async, on_async);
    if (rc != 0) {
        tern_format_err(err, errlen, "storage: uv_async_init: %s", uv_strerror(rc));
        pthread_mutex_lock(&st->mu);
        st->quit = true;
        pthread_cond_signal(&st->work_cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->thread, NULL);
        storage_free(st);
        return NULL;
    }
    st->async.data = st;
    uv_unref((uv_handle_t *)&st->async);
    return st;
}

void storage_stop(storage_t *st)
{
    if (!st)
        return;
    /* Completions may submit follow-up jobs, so keep delivering until the
     * thread is idle with nothing queued and nothing left to deliver. */
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->finished.head && (st->pending.head || st->busy))
            pthread_cond_wait(&st->done_cv, &st->mu);
        if (!st->finished.head)
            break;
        pthread_mutex_unlock(&st->mu);
        while (run_one_completion(st))
            ;
        pthread_mutex_lock(&st->mu);
    }
    st->closed = true;
    st->quit = true;
    pthread_cond_signal(&st->work_cv);
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);

    /* Closing is asynchronous: st is freed by on_close on the next loop
     * iteration, and the loop must run once more for that (see storage.h). */
    uv_close((uv_handle_t *)&st->async, on_close);
}

int storage_submit(storage_t *st, storage_job_fn job, storage_done_cb done, void *arg)
{
    if (!st || !job)
        return TERN_EINVAL;
    /* outstanding and uv_ref are loop-thread state; a submit from anywhere
     * else is a bug that would corrupt them silently. */
    if (!pthread_equal(pthread_self(), st->loop_thread)) {
        log_error(TAG, "storage_submit called off the loop thread");
        return TERN_EPERM;
    }
    storage_job_t *j = tern_xcalloc(1, sizeof(*j));
    j->fn = job;
    j->done = done;
    j->arg = arg;

    pthread_mutex_lock(&st->mu);
    if (st->closed) {
        pthread_mutex_unlock(&st->mu);
        free(j);
        return TERN_EPERM;
    }
    fifo_push(&st->pending, j);
    pthread_cond_signal(&st->work_cv);
    pthread_mutex_unlock(&st->mu);

    if (st->outstanding++ == 0)
        uv_ref((uv_handle_t *)&st->async);
    return 0;
}

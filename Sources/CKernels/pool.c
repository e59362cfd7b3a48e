// A pool of worker threads for parallel regions (C3POCore's Parallel): the helpers wait for the
// next region by spinning for about 100 µs before they sleep, so that the many short regions
// of one forward pass (a sentence's 66 products and norms, a tail step's) do not each pay for
// waking a sleeping thread. Measured with DispatchQueue.concurrentPerform: about 18 µs a region
// on the machines this was written on.
//
// One region runs in the pool at a time; a caller that finds it busy (another thread's region,
// or a region started inside a task) gets C3PO_POOL_BUSY and runs its region some other way.
#include "c3po_kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#if defined(__x86_64__)
#include <immintrin.h>
static inline void relax(void) { _mm_pause(); }
#else
static inline void relax(void) {}
#endif

#define MAX_HELPERS 63
#define SPINS 2000 // pauses before a helper sleeps: about 100 µs

static pthread_mutex_t region_lock = PTHREAD_MUTEX_INITIALIZER; // held by the region's caller
static pthread_mutex_t sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

static int helpers;                      // started so far (under region_lock)
static unsigned long start_generation[MAX_HELPERS + 1]; // the generation before a helper's first region
static atomic_ulong generation;          // bumped once per region
static atomic_int sleepers;              // helpers blocked on `wake`
static atomic_long next_item;
static atomic_int finished;              // helpers done with this region (every started helper acknowledges it)
static c3po_task_fn job_fn;
static void *job_ctx;
static long job_items;
static int job_workers;                  // workers taking items in this region: the caller and helpers 1..job_workers-1

static void run_items(long worker) {
    long i;
    while ((i = atomic_fetch_add_explicit(&next_item, 1, memory_order_relaxed)) < job_items) job_fn(job_ctx, worker, i);
}

static void *helper_main(void *arg) {
    int id = (int)(long)arg; // 1-based: the caller is worker 0
    unsigned long seen = start_generation[id]; // not loaded here: the thread may start after its first region is out
    for (;;) {
        unsigned long g;
        int spins = 0;
        while ((g = atomic_load_explicit(&generation, memory_order_acquire)) == seen) {
            if (++spins < SPINS) { relax(); continue; }
            pthread_mutex_lock(&sleep_lock);
            atomic_fetch_add(&sleepers, 1);
            while ((g = atomic_load(&generation)) == seen) pthread_cond_wait(&wake, &sleep_lock);
            atomic_fetch_sub(&sleepers, 1);
            pthread_mutex_unlock(&sleep_lock);
            break;
        }
        seen = g;
        // Every helper acknowledges every region, those beyond its worker count without taking
        // items, so that the caller does not write the next region's job while one still reads this.
        if (id < job_workers) run_items(id);
        atomic_fetch_add_explicit(&finished, 1, memory_order_release);
    }
    return NULL;
}

int c3po_parallel(long items, long workers, c3po_task_fn fn, void *ctx) {
    if (items <= 0) return 0;
    if (workers > items) workers = items;
    if (workers > MAX_HELPERS + 1) workers = MAX_HELPERS + 1;
    if (workers <= 1) {
        for (long i = 0; i < items; i++) fn(ctx, 0, i);
        return 0;
    }
    if (pthread_mutex_trylock(&region_lock) != 0) return C3PO_POOL_BUSY;
    while (helpers < workers - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        start_generation[helpers + 1] = atomic_load(&generation);
        int failed = pthread_create(&t, &attr, helper_main, (void *)(long)(helpers + 1));
        pthread_attr_destroy(&attr);
        if (failed) break;
        helpers++;
    }
    if (workers - 1 > helpers) workers = helpers + 1;
    job_fn = fn; job_ctx = ctx; job_items = items; job_workers = (int)workers;
    atomic_store_explicit(&next_item, 0, memory_order_relaxed);
    atomic_store_explicit(&finished, 0, memory_order_relaxed);
    // Publishes the job. Sequentially consistent with the sleepers count, so that a helper going
    // to sleep either sees the new generation or is seen and woken.
    atomic_fetch_add(&generation, 1);
    if (atomic_load(&sleepers) > 0) {
        pthread_mutex_lock(&sleep_lock);
        pthread_cond_broadcast(&wake);
        pthread_mutex_unlock(&sleep_lock);
    }
    run_items(0);
    while (atomic_load_explicit(&finished, memory_order_acquire) < helpers) relax();
    pthread_mutex_unlock(&region_lock);
    return 0;
}

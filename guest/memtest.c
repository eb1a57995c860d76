/*
 * memtest: the in-guest memory verifier for live-migration tests.
 *
 * Usage: memtest WORKING_SET_MIB RATE_MIB_PER_S [CHECK_INTERVAL_MS]
 *
 * Allocates WORKING_SET_MIB of memory and rewrites it page by page, cyclically,
 * at RATE_MIB_PER_S (0 = write every page once, then only verify). Every word of
 * page i written in generation g holds a value derived from (i, g, word index),
 * so the program can tell, for every page, whether it still holds exactly what
 * was last written. About every CHECK_INTERVAL_MS (default 1000) it verifies
 * every page and prints one line:
 *
 *   MEMTEST ok check=<n> gen=<pass> pages=<n> rate=<MiB/s measured> stale-total=0
 *
 * On a mismatch it prints (at most MAX_REPORTS per check, then a count):
 *
 *   MEMTEST STALE page=<i> expected-gen=<g> found=gen:<g'>|garbage word=<w> value=<hex>
 *   MEMTEST FAIL check=<n> gen=<pass> stale=<n this check> stale-total=<n>
 *
 * and rewrites the bad pages with their expected contents so that each stale
 * page is reported once; it keeps running either way. A page found holding an
 * older generation is exactly what a live migration that lost a dirty page
 * leaves behind.
 *
 * SIGUSR1 makes it plant one stale page on purpose (the page it wrote last gets
 * its previous generation back, or garbage if it has none), so a test can prove
 * the checker catches what it is meant to catch.
 *
 * Output goes to stdout, line by line (the guest's /init points it at the
 * serial console).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE_BYTES 4096u
#define WORDS_PER_PAGE (PAGE_BYTES / sizeof(uint64_t))
#define MAX_REPORTS 16
/* Writing is paced in slices of this length. */
#define SLICE_NS 10000000ull
/* A backlog longer than this (e.g. the VM was paused) is dropped, not caught up. */
#define MAX_BACKLOG_NS 500000000ull

static volatile sig_atomic_t inject_requested;

static void on_usr1(int sig) {
    (void)sig;
    inject_requested = 1;
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void say(const char *fmt, ...) {
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n > sizeof buf - 2) n = (int)(sizeof buf - 2);
    buf[n++] = '\n';
    /* One write per line, so lines from the kernel and other programs do not split it. */
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(1, buf + off, (size_t)(n - off));
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        off += w;
    }
}

/* splitmix64 finaliser: a cheap bijective mix. */
static inline uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Word 0 = page index, word 1 = generation, the rest a function of both and the word index. */
static inline uint64_t page_seed(uint64_t page, uint64_t gen) { return mix((page << 24) ^ gen); }

static void fill_page(uint64_t *p, uint64_t page, uint64_t gen) {
    uint64_t s = page_seed(page, gen);
    p[0] = page;
    p[1] = gen;
    for (uint64_t w = 2; w < WORDS_PER_PAGE; w++) p[w] = s ^ (w * 0xd6e8feb86659fd93ull);
}

/* Returns -1 if the page holds what (page, gen) writes, else the first bad word. */
static long check_page(const uint64_t *p, uint64_t page, uint64_t gen) {
    if (p[0] != page) return 0;
    if (p[1] != gen) return 1;
    uint64_t s = page_seed(page, gen);
    for (uint64_t w = 2; w < WORDS_PER_PAGE; w++)
        if (p[w] != (s ^ (w * 0xd6e8feb86659fd93ull))) return (long)w;
    return -1;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0') return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    uint64_t set_mib, rate_mib, interval_ms = 1000;
    if (argc < 3 || argc > 4 || parse_u64(argv[1], &set_mib) || parse_u64(argv[2], &rate_mib) ||
        (argc == 4 && parse_u64(argv[3], &interval_ms)) || set_mib == 0 || interval_ms == 0) {
        fprintf(stderr, "usage: memtest WORKING_SET_MIB RATE_MIB_PER_S [CHECK_INTERVAL_MS]\n");
        say("MEMTEST ERROR bad arguments");
        return 2;
    }
    const uint64_t pages = set_mib * (1024 * 1024 / PAGE_BYTES);
    uint8_t *mem = mmap(NULL, pages * PAGE_BYTES, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    uint32_t *gen_of = calloc(pages, sizeof *gen_of);
    if (mem == MAP_FAILED || gen_of == NULL) {
        say("MEMTEST ERROR cannot allocate %" PRIu64 " MiB: %s", set_mib, strerror(errno));
        return 1;
    }
    /* Best effort: nothing to swap to in the test guest anyway. */
    (void)mlock(mem, pages * PAGE_BYTES);

    for (uint64_t i = 0; i < pages; i++) fill_page((uint64_t *)(mem + i * PAGE_BYTES), i, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    say("MEMTEST start pages=%" PRIu64 " set-mib=%" PRIu64 " rate=%" PRIu64 " interval-ms=%" PRIu64,
        pages, set_mib, rate_mib, interval_ms);

    const uint64_t pages_per_s = rate_mib * (1024 * 1024 / PAGE_BYTES);
    uint64_t cursor = 0;     /* next page to rewrite */
    uint64_t pass = 0;       /* completed passes over the working set */
    uint64_t check = 0;
    uint64_t stale_total = 0;
    uint64_t written_since = 0;
    uint64_t owed_ns = 0;    /* time not yet paid for in written pages */
    uint64_t last = now_ns();
    uint64_t last_check = last;

    for (;;) {
        uint64_t t = now_ns();
        if (pages_per_s > 0) {
            owed_ns += t - last;
            if (owed_ns > MAX_BACKLOG_NS) owed_ns = MAX_BACKLOG_NS;
            uint64_t due = owed_ns * pages_per_s / 1000000000ull;
            if (due > 0) {
                owed_ns -= due * 1000000000ull / pages_per_s;
                for (uint64_t k = 0; k < due; k++) {
                    uint32_t g = gen_of[cursor] + 1;
                    fill_page((uint64_t *)(mem + cursor * PAGE_BYTES), cursor, g);
                    gen_of[cursor] = g;
                    if (++cursor == pages) {
                        cursor = 0;
                        pass++;
                    }
                }
                written_since += due;
            }
        }
        last = t;

        if (inject_requested) {
            inject_requested = 0;
            uint64_t i = cursor == 0 ? pages - 1 : cursor - 1;
            uint64_t *p = (uint64_t *)(mem + i * PAGE_BYTES);
            if (gen_of[i] > 0)
                fill_page(p, i, gen_of[i] - 1);
            else
                p[WORDS_PER_PAGE - 1] ^= 1;
            say("MEMTEST inject page=%" PRIu64 " gen=%" PRIu32, i, gen_of[i]);
        }

        if (t - last_check >= interval_ms * 1000000ull) {
            check++;
            uint64_t stale = 0;
            for (uint64_t i = 0; i < pages; i++) {
                uint64_t *p = (uint64_t *)(mem + i * PAGE_BYTES);
                long bad = check_page(p, i, gen_of[i]);
                if (bad < 0) continue;
                if (stale < MAX_REPORTS) {
                    if (bad >= 2 || p[0] != i)
                        say("MEMTEST STALE page=%" PRIu64 " expected-gen=%" PRIu32
                            " found=garbage word=%ld value=%016" PRIx64,
                            i, gen_of[i], bad, p[bad]);
                    else if (check_page(p, i, p[1]) < 0)
                        say("MEMTEST STALE page=%" PRIu64 " expected-gen=%" PRIu32 " found=gen:%" PRIu64,
                            i, gen_of[i], p[1]);
                    else
                        say("MEMTEST STALE page=%" PRIu64 " expected-gen=%" PRIu32
                            " found=garbage word=1 value=%016" PRIx64,
                            i, gen_of[i], p[1]);
                }
                stale++;
                fill_page(p, i, gen_of[i]);
            }
            uint64_t t2 = now_ns();
            /* Measured over the interval, so a paused or starved guest shows it. */
            double secs = (double)(t2 - last_check) / 1e9;
            double rate = secs > 0 ? (double)written_since * PAGE_BYTES / (1024.0 * 1024.0) / secs : 0;
            stale_total += stale;
            if (stale == 0)
                say("MEMTEST ok check=%" PRIu64 " gen=%" PRIu64 " pages=%" PRIu64 " rate=%.1f stale-total=%" PRIu64,
                    check, pass, pages, rate, stale_total);
            else
                say("MEMTEST FAIL check=%" PRIu64 " gen=%" PRIu64 " stale=%" PRIu64 " stale-total=%" PRIu64,
                    check, pass, stale, stale_total);
            written_since = 0;
            last_check = t2;
        }

        if (pages_per_s == 0) {
            uint64_t wait_ns = interval_ms * 1000000ull - (now_ns() - last_check);
            if ((int64_t)wait_ns > 0) {
                struct timespec ts = {(time_t)(wait_ns / 1000000000ull), (long)(wait_ns % 1000000000ull)};
                nanosleep(&ts, NULL);
            }
        } else {
            struct timespec ts = {0, (long)SLICE_NS};
            nanosleep(&ts, NULL);
        }
    }
}

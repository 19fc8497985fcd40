/*
 * lose_unsynced: an LD_PRELOAD library that makes a process lose, when it is killed, every
 * byte it wrote but did not fsync - what a power failure does to the page cache, which a plain
 * kill -9 leaves intact. Durability tests run a Creek node under it to show that every
 * acknowledged write was fsynced, not merely written.
 *
 * Files whose path contains $CREEK_LOSE_UNSYNCED_MATCH (e.g. "translog-") are tracked: write(),
 * writev() and pwrite() to them are kept in the process's memory instead of the file, and
 * fsync()/fdatasync() write what is kept to the file and sync it. close() without a sync drops
 * what is kept. A kill -9 therefore loses exactly the unsynced bytes. Reads of tracked files
 * by the same process would not see kept bytes; Creek reads its translog only when it opens a
 * shard, before it writes.
 *
 * Built by tests/src/bin/creek-durability.rs with the machine's C compiler.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FDS 65536

struct kept {
    int tracked;
    char *data;
    size_t len;
    size_t cap;
};

static struct kept kept[MAX_FDS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_close)(int);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);

static void resolve(void) {
    if (real_write) return;
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_close = dlsym(RTLD_NEXT, "close");
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
}

static int matches(const char *path) {
    const char *pattern = getenv("CREEK_LOSE_UNSYNCED_MATCH");
    return path && pattern && *pattern && strstr(path, pattern) != NULL;
}

static void track(int fd, const char *path) {
    if (fd < 0 || fd >= MAX_FDS || !matches(path)) return;
    pthread_mutex_lock(&lock);
    kept[fd].tracked = 1;
    kept[fd].len = 0;
    pthread_mutex_unlock(&lock);
}

/* Appends to the kept bytes of fd; returns 0, or -1 if fd is not tracked. */
static int keep(int fd, const void *buf, size_t count) {
    if (fd < 0 || fd >= MAX_FDS) return -1;
    pthread_mutex_lock(&lock);
    struct kept *k = &kept[fd];
    if (!k->tracked) {
        pthread_mutex_unlock(&lock);
        return -1;
    }
    if (k->len + count > k->cap) {
        size_t cap = k->cap ? k->cap : 4096;
        while (cap < k->len + count) cap *= 2;
        char *data = realloc(k->data, cap);
        if (!data) {
            pthread_mutex_unlock(&lock);
            errno = ENOMEM;
            return -2;
        }
        k->data = data;
        k->cap = cap;
    }
    memcpy(k->data + k->len, buf, count);
    k->len += count;
    pthread_mutex_unlock(&lock);
    return 0;
}

/* Writes the kept bytes of fd to the file. */
static int flush_kept(int fd) {
    if (fd < 0 || fd >= MAX_FDS) return 0;
    pthread_mutex_lock(&lock);
    struct kept *k = &kept[fd];
    size_t done = 0;
    while (k->tracked && done < k->len) {
        ssize_t n = real_write(fd, k->data + done, k->len - done);
        if (n < 0) {
            if (errno == EINTR) continue;
            pthread_mutex_unlock(&lock);
            return -1;
        }
        done += (size_t)n;
    }
    k->len = 0;
    pthread_mutex_unlock(&lock);
    return 0;
}

ssize_t write(int fd, const void *buf, size_t count) {
    resolve();
    int kept_it = keep(fd, buf, count);
    if (kept_it == 0) return (ssize_t)count;
    if (kept_it == -2) return -1;
    return real_write(fd, buf, count);
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
    resolve();
    if (fd >= 0 && fd < MAX_FDS && kept[fd].tracked) {
        ssize_t total = 0;
        for (int i = 0; i < iovcnt; i++) {
            if (keep(fd, iov[i].iov_base, iov[i].iov_len) != 0) return -1;
            total += (ssize_t)iov[i].iov_len;
        }
        return total;
    }
    static ssize_t (*real_writev)(int, const struct iovec *, int);
    if (!real_writev) real_writev = dlsym(RTLD_NEXT, "writev");
    return real_writev(fd, iov, iovcnt);
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    resolve();
    /* Tracked files are append-only logs: positioned writes are not modelled. */
    if (fd >= 0 && fd < MAX_FDS && kept[fd].tracked) flush_kept(fd);
    return real_pwrite(fd, buf, count, offset);
}

int fsync(int fd) {
    resolve();
    if (flush_kept(fd) != 0) return -1;
    return real_fsync(fd);
}

int fdatasync(int fd) {
    resolve();
    if (flush_kept(fd) != 0) return -1;
    return real_fdatasync(fd);
}

int close(int fd) {
    resolve();
    if (fd >= 0 && fd < MAX_FDS) {
        pthread_mutex_lock(&lock);
        /* What was never synced never reached the disk. */
        kept[fd].tracked = 0;
        kept[fd].len = 0;
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}

static mode_t mode_arg(int flags, va_list args) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(args, int) : 0;
}

int open(const char *path, int flags, ...) {
    resolve();
    va_list args;
    va_start(args, flags);
    mode_t mode = mode_arg(flags, args);
    va_end(args);
    int fd = real_open(path, flags, mode);
    track(fd, path);
    return fd;
}

int open64(const char *path, int flags, ...) {
    resolve();
    va_list args;
    va_start(args, flags);
    mode_t mode = mode_arg(flags, args);
    va_end(args);
    int fd = real_open64(path, flags, mode);
    track(fd, path);
    return fd;
}

int openat(int dirfd, const char *path, int flags, ...) {
    resolve();
    va_list args;
    va_start(args, flags);
    mode_t mode = mode_arg(flags, args);
    va_end(args);
    int fd = real_openat(dirfd, path, flags, mode);
    track(fd, path);
    return fd;
}

int openat64(int dirfd, const char *path, int flags, ...) {
    resolve();
    va_list args;
    va_start(args, flags);
    mode_t mode = mode_arg(flags, args);
    va_end(args);
    int fd = real_openat(dirfd, path, flags, mode);
    track(fd, path);
    return fd;
}

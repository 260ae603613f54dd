/* A power cut for one process: writes to an append-only file (*.incr.aof) stay in this
 * process's memory until fsync/fdatasync, so SIGKILL loses exactly what a power loss loses
 * (the page cache), and nothing that was fsynced. LD_PRELOAD it into valkey-server; used by
 * tests/power_loss_support.py. Single-purpose test code: one buffer per fd, a lock around all. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FD 1024
static char *held[MAX_FD];
static size_t held_len[MAX_FD], held_cap[MAX_FD];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int is_aof(int fd) {
    char link[64], path[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return n > 9 && strcmp(path + n - 9, ".incr.aof") == 0;
}

static ssize_t real_write(int fd, const void *buf, size_t count) {
    static ssize_t (*fn)(int, const void *, size_t);
    if (!fn) fn = dlsym(RTLD_NEXT, "write");
    return fn(fd, buf, count);
}

ssize_t write(int fd, const void *buf, size_t count) {
    if (fd < 0 || fd >= MAX_FD || !is_aof(fd)) return real_write(fd, buf, count);
    pthread_mutex_lock(&lock);
    if (held_len[fd] + count > held_cap[fd]) {
        held_cap[fd] = (held_len[fd] + count) * 2;
        held[fd] = realloc(held[fd], held_cap[fd]);
    }
    memcpy(held[fd] + held_len[fd], buf, count);
    held_len[fd] += count;
    pthread_mutex_unlock(&lock);
    return (ssize_t)count;
}

static void flush_held(int fd) {
    if (fd < 0 || fd >= MAX_FD) return;
    pthread_mutex_lock(&lock);
    size_t done = 0;
    while (done < held_len[fd]) {
        ssize_t n = real_write(fd, held[fd] + done, held_len[fd] - done);
        if (n <= 0) break;
        done += (size_t)n;
    }
    held_len[fd] = 0;
    pthread_mutex_unlock(&lock);
}

int fsync(int fd) {
    static int (*fn)(int);
    if (!fn) fn = dlsym(RTLD_NEXT, "fsync");
    flush_held(fd);
    return fn(fd);
}

int fdatasync(int fd) {
    static int (*fn)(int);
    if (!fn) fn = dlsym(RTLD_NEXT, "fdatasync");
    flush_held(fd);
    return fn(fd);
}

int close(int fd) {
    static int (*fn)(int);
    if (!fn) fn = dlsym(RTLD_NEXT, "close");
    flush_held(fd); /* a closed file's data is the OS's now, as on a real machine */
    return fn(fd);
}

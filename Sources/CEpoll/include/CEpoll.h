// Exposes Linux's epoll API (and accept4, and prctl's no-new-privs) to Swift: Glibc's module map has
// neither, and variadic prctl cannot be called from Swift.
#ifndef MOAT_CEPOLL_H
#define MOAT_CEPOLL_H
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>

/// accept4(2), which glibc declares only under _GNU_SOURCE.
int moat_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);

/// prctl(PR_SET_NO_NEW_PRIVS, 1): no exec from this thread (or threads it starts) can gain privileges.
int moat_set_no_new_privs(void);

/// Empties the calling thread's capability sets (effective, permitted, inheritable, ambient): Linux keeps
/// them per thread, and a process that is not root but was given some (systemd's AmbientCapabilities=,
/// setpriv) keeps them over any setuid. 0 on success, else -1 with errno.
int moat_drop_thread_capabilities(void);

/// The same for every thread of the process: each is sent a signal whose handler drops its own sets
/// (as glibc does for setuid). The caller checks /proc afterwards; -1 if the calling thread's failed.
int moat_drop_capabilities_of_every_thread(void);

/// malloc_trim(0): gives freed heap memory back to the system (glibc; <malloc.h> is not in Swift's Glibc).
int moat_malloc_trim(void);

/// Drops this process's page mappings of every loaded object's read-only segments (MADV_DONTNEED on
/// the PT_LOAD segments mapped without write permission: code, read-only data): the pages stay in the
/// page cache, and what is used again comes back on a minor fault. Called once serving starts, so that code run only while starting (flag parsing,
/// configuration, the restore) is not counted in the process's RSS. Returns the bytes of mappings dropped.
size_t moat_release_code_pages(void);
#endif
#endif

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

/// malloc_trim(0): gives freed heap memory back to the system (glibc; <malloc.h> is not in Swift's Glibc).
int moat_malloc_trim(void);
#endif
#endif

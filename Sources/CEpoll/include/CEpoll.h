// Exposes Linux's epoll API (and accept4) to Swift: Glibc's module map has neither.
#ifndef MOAT_CEPOLL_H
#define MOAT_CEPOLL_H
#ifdef __linux__
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>

/// accept4(2), which glibc declares only under _GNU_SOURCE.
int moat_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags);
#endif
#endif

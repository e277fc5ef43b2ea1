// A small, stable interface over OpenSSL 3 (Debian's libssl3) for Moat's TLS listeners: a context per
// certificate set and a session per connection whose records go through memory buffers, so that the
// epoll loops own every socket read and write (TLS is a transform between the socket and the session).
// OpenSSL's types stay behind opaque pointers: Swift never sees its headers or macros.
#ifndef MOAT_CMOATTLS_H
#define MOAT_CMOATTLS_H
#include <stddef.h>

typedef struct moat_tls_context moat_tls_context;
typedef struct moat_tls_session moat_tls_session;

/// A server context: certificate chain and key (key NULL: in the chain file), client-certificate CA
/// (NULL: none), memcached's ssl_verify_mode (0 none, 1 verify if sent, 2 require, 3 require once),
/// TLS 1.3 as the floor when minimum_tls13 (else 1.2). NULL with a message in error on failure.
moat_tls_context *moat_tls_server_context_new(const char *chain, const char *key, const char *ca, int verify_mode,
                                              int minimum_tls13, char *error, size_t error_size);
/// A client context (tests, probes): trusts ca (NULL: verifies nothing); cert/key NULL: no client certificate.
moat_tls_context *moat_tls_client_context_new(const char *ca, const char *cert, const char *key, char *error,
                                              size_t error_size);
/// Contexts are reference counted: sessions keep theirs alive.
void moat_tls_context_free(moat_tls_context *context);

/// A connection's TLS state, server side (accepting) or client side (connecting to host for SNI, may be NULL).
moat_tls_session *moat_tls_session_new(moat_tls_context *context, int server, const char *host);
void moat_tls_session_free(moat_tls_session *session);

/// Ciphertext received from the peer. Returns 0, or -1 if it cannot be buffered.
int moat_tls_feed(moat_tls_session *session, const void *bytes, size_t count);
/// Decrypts into buffer (driving the handshake first): > 0 plaintext bytes; 0 nothing more until more
/// ciphertext arrives; -1 a fatal error (an alert may be waiting in the output); -2 the peer closed (close_notify).
long moat_tls_read(moat_tls_session *session, void *buffer, size_t capacity);
/// Encrypts all of bytes into records waiting in the output. 0, or -1 on a fatal error.
int moat_tls_write(moat_tls_session *session, const void *bytes, size_t count);
/// Ciphertext waiting to be sent, and taking it (returns the bytes copied).
size_t moat_tls_pending_output(moat_tls_session *session);
size_t moat_tls_take_output(moat_tls_session *session, void *buffer, size_t capacity);
/// 1 when decrypted bytes or unread records are buffered (another moat_tls_read may return something).
int moat_tls_has_input(moat_tls_session *session);
/// 1 once the handshake has completed.
/// Frees the session's record buffers and memory BIOs' storage if nothing is buffered in them (1 when
/// freed); the next record allocates them again.
int moat_tls_release_buffers(moat_tls_session *session);
int moat_tls_handshake_done(moat_tls_session *session);
/// Queues close_notify.
void moat_tls_close_notify(moat_tls_session *session);
/// The verified peer certificate's subject common names: -1 when there is no certificate or it did not
/// verify; else how many CNs the subject has, with the first copied (UTF-8, NUL-terminated) into name
/// when it fits and holds no NUL byte (else name is "" ).
int moat_tls_peer_common_names(moat_tls_session *session, char *name, size_t name_size);
/// The negotiated protocol ("TLSv1.3"), or "unknown".
const char *moat_tls_version(moat_tls_session *session);
/// The oldest error queued on this thread, as text, and the queue cleared.
void moat_tls_last_error(char *buffer, size_t size);
#endif

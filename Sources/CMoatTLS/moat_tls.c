#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include "CMoatTLS.h"

struct moat_tls_session {
    SSL *ssl;
    BIO *in;   // ciphertext from the peer (owned by ssl)
    BIO *out;  // ciphertext to the peer (owned by ssl)
};

static void describe_error(const char *what, char *error, size_t error_size) {
    if (error == NULL || error_size == 0) return;
    unsigned long code = ERR_get_error();
    char reason[256] = "";
    if (code != 0) ERR_error_string_n(code, reason, sizeof reason);
    snprintf(error, error_size, "%s%s%s", what, code ? ": " : "", reason);
    ERR_clear_error();
}

moat_tls_context *moat_tls_server_context_new(const char *chain, const char *key, const char *ca, int verify_mode,
                                              int minimum_tls13, char *error, size_t error_size) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        describe_error("cannot create a TLS context", error, error_size);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, minimum_tls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    // Renegotiation is a client-driven CPU cost with no use to a cache client; compression leaks (CRIME).
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    // No SSL_MODE_RELEASE_BUFFERS: it frees and reallocates both record buffers (about 34 KB) around
    // every record, a malloc and free per request; idle connections give them back with
    // moat_tls_release_buffers instead (the loop's idle-buffer release).
    static const unsigned char session_context[] = "moat";
    SSL_CTX_set_session_id_context(ctx, session_context, sizeof session_context - 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, chain) != 1) {
        describe_error(chain, error, error_size);
        SSL_CTX_free(ctx);
        return NULL;
    }
    const char *key_file = key ? key : chain;
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        describe_error(key_file, error, error_size);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        describe_error("the private key does not match the certificate", error, error_size);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (ca != NULL) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 || names == NULL) {
            if (names) sk_X509_NAME_pop_free(names, X509_NAME_free);
            describe_error(ca, error, error_size);
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    int mode = SSL_VERIFY_NONE;
    if (verify_mode == 1) mode = SSL_VERIFY_PEER;
    if (verify_mode == 2) mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    if (verify_mode >= 3) mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT | SSL_VERIFY_CLIENT_ONCE;
    SSL_CTX_set_verify(ctx, mode, NULL);
    return (moat_tls_context *)ctx;
}

moat_tls_context *moat_tls_client_context_new(const char *ca, const char *cert, const char *key, char *error,
                                              size_t error_size) {
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        describe_error("cannot create a TLS context", error, error_size);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (ca != NULL) {
        if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
            describe_error(ca, error, error_size);
            SSL_CTX_free(ctx);
            return NULL;
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (cert != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1) {
            describe_error(cert, error, error_size);
            SSL_CTX_free(ctx);
            return NULL;
        }
    }
    return (moat_tls_context *)ctx;
}

void moat_tls_context_free(moat_tls_context *context) {
    SSL_CTX_free((SSL_CTX *)context);
}

moat_tls_session *moat_tls_session_new(moat_tls_context *context, int server, const char *host) {
    moat_tls_session *session = calloc(1, sizeof *session);
    if (session == NULL) return NULL;
    session->ssl = SSL_new((SSL_CTX *)context);
    session->in = BIO_new(BIO_s_mem());
    session->out = BIO_new(BIO_s_mem());
    if (session->ssl == NULL || session->in == NULL || session->out == NULL) {
        if (session->ssl) SSL_free(session->ssl);
        if (session->in) BIO_free(session->in);
        if (session->out) BIO_free(session->out);
        free(session);
        ERR_clear_error();
        return NULL;
    }
    // An empty memory BIO reports "retry" rather than end of file.
    BIO_set_mem_eof_return(session->in, -1);
    BIO_set_mem_eof_return(session->out, -1);
    SSL_set_bio(session->ssl, session->in, session->out);
    if (server) {
        SSL_set_accept_state(session->ssl);
    } else {
        if (host) SSL_set_tlsext_host_name(session->ssl, host);
        SSL_set_connect_state(session->ssl);
    }
    return session;
}

void moat_tls_session_free(moat_tls_session *session) {
    if (session == NULL) return;
    SSL_free(session->ssl);  // frees both BIOs
    free(session);
}

int moat_tls_feed(moat_tls_session *session, const void *bytes, size_t count) {
    if (count == 0) return 0;
    if (count > (size_t)0x7fffffff) return -1;
    if (BIO_write(session->in, bytes, (int)count) == (int)count) return 0;
    ERR_clear_error();
    return -1;
}

// The thread's error queue is kept empty (SSL_get_error needs it so) by clearing it after each failure,
// not before each call: ERR_clear_error was 1.7% of a TLS request's server CPU (docs/performance.md).
long moat_tls_read(moat_tls_session *session, void *buffer, size_t capacity) {
    if (capacity > (size_t)0x7fffffff) capacity = 0x7fffffff;
    int read = SSL_read(session->ssl, buffer, (int)capacity);
    if (read > 0) return read;
    switch (SSL_get_error(session->ssl, read)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return 0;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return -2;
    default:
        // The caller reads (and so clears) the queue with moat_tls_last_error.
        // Before any TLS record was understood (plaintext on a TLS port), OpenSSL queues no alert. Say
        // why anyway, as BoringSSL does: a fatal protocol_version alert in a TLS 1.0 record (RFC 8446 6.2).
        if (!SSL_is_init_finished(session->ssl) && BIO_ctrl_pending(session->out) == 0) {
            static const unsigned char alert[] = {0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46};
            BIO_write(session->out, alert, sizeof alert);
        }
        return -1;
    }
}

int moat_tls_write(moat_tls_session *session, const void *bytes, size_t count) {
    const unsigned char *next = bytes;
    while (count > 0) {
        int chunk = count > (size_t)0x40000000 ? 0x40000000 : (int)count;
        int written = SSL_write(session->ssl, next, chunk);
        if (written <= 0) {  // a memory BIO takes everything: anything else is fatal
            ERR_clear_error();
            return -1;
        }
        next += written;
        count -= (size_t)written;
    }
    return 0;
}

size_t moat_tls_pending_output(moat_tls_session *session) {
    return BIO_ctrl_pending(session->out);
}

size_t moat_tls_take_output(moat_tls_session *session, void *buffer, size_t capacity) {
    if (capacity > (size_t)0x7fffffff) capacity = 0x7fffffff;
    int read = BIO_read(session->out, buffer, (int)capacity);
    return read > 0 ? (size_t)read : 0;
}

int moat_tls_has_input(moat_tls_session *session) {
    return SSL_pending(session->ssl) > 0 || BIO_ctrl_pending(session->in) > 0;
}

int moat_tls_release_buffers(moat_tls_session *session) {
    if (BIO_ctrl_pending(session->in) > 0 || BIO_ctrl_pending(session->out) > 0) return 0;
    // A memory BIO keeps the largest size it ever held; empty ones are swapped for new ones (SSL_set_bio
    // frees the old pair), so a connection that once moved a large value holds nothing for it when idle.
    BIO *in = BIO_new(BIO_s_mem());
    BIO *out = BIO_new(BIO_s_mem());
    if (in != NULL && out != NULL) {
        BIO_set_mem_eof_return(in, -1);
        BIO_set_mem_eof_return(out, -1);
        SSL_set_bio(session->ssl, in, out);
        session->in = in;
        session->out = out;
    } else {
        if (in) BIO_free(in);
        if (out) BIO_free(out);
        ERR_clear_error();
    }
    return SSL_free_buffers(session->ssl);
}

int moat_tls_handshake_done(moat_tls_session *session) {
    return SSL_is_init_finished(session->ssl) ? 1 : 0;
}

void moat_tls_close_notify(moat_tls_session *session) {
    ERR_clear_error();
    if (SSL_is_init_finished(session->ssl)) SSL_shutdown(session->ssl);
    ERR_clear_error();
}

int moat_tls_peer_common_names(moat_tls_session *session, char *name, size_t name_size) {
    if (name_size > 0) name[0] = 0;
    X509 *peer = SSL_get0_peer_certificate(session->ssl);
    if (peer == NULL || SSL_get_verify_result(session->ssl) != X509_V_OK) return -1;
    X509_NAME *subject = X509_get_subject_name(peer);
    int count = 0;
    int first = -1;
    for (int index = -1; (index = X509_NAME_get_index_by_NID(subject, NID_commonName, index)) >= 0;) {
        if (first < 0) first = index;
        count++;
    }
    if (count >= 1 && name_size > 0) {
        unsigned char *utf8 = NULL;
        int length = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, first)));
        if (length > 0 && (size_t)length < name_size && memchr(utf8, 0, (size_t)length) == NULL) {
            memcpy(name, utf8, (size_t)length);
            name[length] = 0;
        }
        OPENSSL_free(utf8);
    }
    return count;
}

const char *moat_tls_version(moat_tls_session *session) {
    return SSL_get_version(session->ssl);
}

void moat_tls_last_error(char *buffer, size_t size) {
    describe_error("TLS error", buffer, size);
}

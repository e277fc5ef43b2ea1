extension ServerConfiguration {
    /// `stats settings` lines, with memcached's names where one exists.
    package var settingsReport: [(String, String)] {
        [
            ("maxbytes", "\(memoryLimit)"),
            ("maxconns", "\(maxConnections)"),
            ("tcpport", "\(listeners.first?.port ?? 0)"),
            ("udpport", "\(udp?.port ?? 0)"),
            ("inter", listeners.map(\.description).joined(separator: ",")),
            ("verbosity", "\(verbosity)"),
            ("evictions", evictionsEnabled ? "on" : "off"),
            ("domain_socket", unixSocket ?? "NULL"),
            ("umask", String(unixMask, radix: 8)),
            ("num_threads", "\(threads)"),
            ("cas_enabled", "yes"),
            ("tcp_backlog", "\(backlog)"),
            ("binding_protocol", protocolMode == .auto ? "auto-negotiate" : protocolMode.rawValue),
            ("auth_enabled_sasl", authentication == nil ? "no" : "yes"),
            ("auth_enabled_ascii", authentication == nil ? "no" : "yes"),
            ("sasl_mechs", authentication?.mechanisms.joined(separator: " ") ?? ""),
            ("auth_timeout", "\(authentication?.timeout ?? 0)"),
            ("item_size_max", "\(maxItemSize)"),
            ("maxconns_fast", "yes"),
            ("flush_enabled", flushEnabled ? "yes" : "no"),
            ("dump_enabled", dumpEnabled ? "yes" : "no"),
            ("shutdown_enabled", shutdownEnabled ? "yes" : "no"),
            ("idle_timeout", "\(idleTimeout)"),
            ("lenient_keys", lenientKeys ? "yes" : "no"),
            ("io_backend", "epoll"),
            ("ssl_enabled", tls == nil ? "no" : "yes"),
            ("ssl_chain_cert", tls?.chainCertificate ?? "(null)"),
            ("ssl_key", tls?.privateKey ?? "(null)"),
            ("ssl_verify_mode", "\(tls?.verifyMode ?? 0)"),
            ("ssl_ca_cert", tls?.caCertificate ?? "(null)"),
            ("ssl_min_version", "tlsv\(tls?.minimumVersion ?? "1.2")"),
            ("allow", addressFilter.allow.map(\.description).joined(separator: ",")),
            ("deny", addressFilter.deny.map(\.description).joined(separator: ",")),
            ("max_conns_per_ip", "\(maxConnectionsPerAddress)"),
            ("command_timeout", "\(commandTimeout)"),
            ("output_timeout", "\(outputTimeout)"),
            ("output_budget", "\(outputBudgetMegabytes)"),
            ("security_log", securityLog),
            ("canaries", "\(canaryKeys.count)"),
        ]
    }

    /// The one line logged at start that says what is exposed.
    package func exposureSummary(servingAs account: String) -> String {
        var parts: [String] = []
        let tcp = listeners.map(\.description)
        parts.append("tcp " + (tcp.isEmpty ? "off" : tcp.joined(separator: ", ")))
        parts.append("unix " + (unixSocket.map { "\($0) (mode \(String(unixMask, radix: 8)))" } ?? "off"))
        if let udp {
            let hosts = Set(listeners.map(\.host)).sorted()
            parts.append(
                "udp " + hosts.map { ListenAddress(host: $0, port: udp.port).description }.joined(separator: ", ")
                    + " (\(udp.writes ? "reads and writes" : "read-only"), replies at most \(udp.amplification)x the request, \(udp.datagramsPerSecond)/s per source)"
            )
        } else {
            parts.append("udp off")
        }
        parts.append("protocol " + (protocolMode == .auto ? "ascii+binary (auto)" : protocolMode.rawValue))
        if let authentication {
            let source =
                authentication.credentialsPath.map { "credentials \($0)" }
                ?? "memcached plaintext file \(authentication.plaintextPath ?? "")"
            parts.append("auth required (\(authentication.mechanisms.joined(separator: " ")) + ascii; \(source))")
        } else {
            parts.append("auth none")
        }
        if let tls {
            let plain = listeners.filter { !$0.tls }.map(\.description)
            parts.append(
                "tls on (min TLS \(tls.minimumVersion), client certificates "
                    + ["off", "requested", "required", "required"][tls.verifyMode]
                    + (plain.isEmpty ? ")" : "; plain: \(plain.joined(separator: ", ")))"))
        } else {
            parts.append("tls off")
        }
        if !addressFilter.allow.isEmpty || !addressFilter.deny.isEmpty {
            parts.append(
                "allow "
                    + (addressFilter.allow.isEmpty
                        ? "any" : addressFilter.allow.map(\.description).joined(separator: " "))
                    + (addressFilter.deny.isEmpty
                        ? "" : ", deny " + addressFilter.deny.map(\.description).joined(separator: " ")))
        }
        let publicNote =
            authentication != nil
            ? "yes, authenticated"
            : (addressFilter.isRestrictive && !addressFilter.allow.isEmpty
                ? "yes, allow list" : "YES (-o insecure_public_bind)")
        parts.append("public " + (publicListeners.isEmpty ? "no" : publicNote))
        parts.append(
            "metrics " + (metrics.map { "http://\($0.isIPv6 ? "[\($0.host)]" : $0.host):\($0.port)/metrics" } ?? "off"))
        parts.append("serving as \(account)")
        return parts.joined(separator: "; ")
    }
}

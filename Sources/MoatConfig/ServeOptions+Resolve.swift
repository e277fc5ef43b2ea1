import MoatAccess

extension ServeOptions {
    /// memcached's tuning options that have no meaning for Moat's engine; accepted so that existing
    /// command lines keep working, and reported as ignored.
    static let ignoredExtendedOptions: Set<String> = [
        "maxconns_fast", "no_maxconns_fast", "hashpower", "tail_repair_time", "hash_algorithm", "lru_crawler",
        "no_lru_crawler", "lru_maintainer", "no_lru_maintainer", "hot_lru_pct", "warm_lru_pct", "hot_max_factor",
        "warm_max_factor", "temporary_ttl", "idle_timeout_grace", "watcher_logbuf_size", "worker_logbuf_size",
        "slab_reassign", "no_slab_reassign", "slab_automove", "slab_automove_ratio", "slab_automove_window",
        "slab_chunk_max", "slab_sizes", "lru_crawler_sleep", "lru_crawler_tocrawl", "modern", "no_modern",
        "track_sizes", "no_hashexpand", "resp_obj_mem_limit", "read_buf_mem_limit", "no_inline_ascii_resp",
        "inline_ascii_resp", "expirezero_does_not_evict", "drop_privileges", "no_drop_privileges",
        "lru_segmented", "no_lru_segmented", "large_memory_pages", "max_reqs_per_event",
    ]

    /// Validates the flags and applies Moat's defaults.
    package func resolve() throws -> ServerConfiguration {
        var ignored: [String] = []
        // Unset (nil) is neither the command line's nor the configuration file's: memcached's defaults.
        let port = self.port ?? 11211
        let unixMask = self.unixMask ?? "0700"
        let udpPort = self.udpPort ?? 0
        let memoryLimit = self.memoryLimit ?? "64"
        let connLimit = self.connLimit ?? 1024
        let threads = self.threads ?? 4
        let maxItemSize = self.maxItemSize ?? "1m"
        let protocolMode = self.protocolMode ?? "auto"
        let backlog = self.backlog ?? 1024
        guard (0...65535).contains(port) else { throw ConfigurationError("-p: port \(port) is out of range 0-65535") }
        guard (0...65535).contains(udpPort) else {
            throw ConfigurationError("-U: port \(udpPort) is out of range 0-65535")
        }
        guard let megabytes = Int(memoryLimit), megabytes > 0, megabytes <= 1 << 30 else {
            throw ConfigurationError("-m \(memoryLimit): expected a number of megabytes, at least 1")
        }
        let itemSize = try Self.parseSize(maxItemSize, flag: "-I")
        guard itemSize >= 1024 else {
            throw ConfigurationError("-I \(maxItemSize): the item size limit must be at least 1k")
        }
        guard itemSize <= 1024 * 1024 * 1024 else {
            throw ConfigurationError("-I \(maxItemSize): the item size limit may not exceed 1g")
        }
        let memoryBytes = megabytes * 1024 * 1024
        guard itemSize <= memoryBytes / 2 else {
            throw ConfigurationError("-I \(maxItemSize): cannot exceed half of the memory limit (-m \(megabytes))")
        }
        guard connLimit > 0 else { throw ConfigurationError("-c \(connLimit): must be at least 1") }
        guard (1...256).contains(threads) else { throw ConfigurationError("-t \(threads): must be between 1 and 256") }
        guard let mask = UInt32(unixMask, radix: 8), mask <= 0o777 else {
            throw ConfigurationError("-a \(unixMask): expected octal permissions such as 0700")
        }
        let mode: ProtocolChoice
        switch protocolMode {
        case "auto": mode = .auto
        case "ascii": mode = .ascii
        case "binary": mode = .binary
        default:
            throw ConfigurationError("-B \(protocolMode): expected auto, ascii or binary")
        }

        var idleTimeout = 0
        var insecurePublicBind = false
        var lenientKeys = false
        var restoreMaxAge: Int?
        var restoreKey: String?
        var auth = AuthenticationOptions()
        var filter = AddressFilter()
        var maxPerAddress = 0
        var securityLog = "stderr"
        var sslChain: String?
        var sslKey: String?
        var sslCA: String?
        var sslVerify = 0
        var sslMinimum = "1.2"
        var sslHandshakeTimeout = 10
        var sslCertAuth = false
        var sslIgnored: [String] = []
        var canaries: [[UInt8]] = []
        var verbosityEnabled = true
        var commandTimeout = 10
        var outputTimeout = 30
        var outputBudget = 64
        var udp = UDPOptions()
        var insecureUDP = false
        var metricsPort: Int?
        var metricsHost = "127.0.0.1"
        /// `-o allow=10.0.0.0/8,::1`: the comma that separates -o options also continues an address list.
        var listBeingRead: String?
        func block(_ text: String, _ list: String) throws -> AddressBlock {
            guard let block = AddressBlock(text) else {
                throw ConfigurationError(
                    """
                    -o \(list)=\(text): expected an IPv4 or IPv6 address or CIDR block such as 10.0.0.0/8 or \
                    2001:db8::/32 (no host bits past the prefix)
                    """
                )
            }
            return block
        }
        func count(_ name: String, _ value: String?, minimum: Int) throws -> Int {
            guard let value, let number = Int(value), number >= minimum else {
                throw ConfigurationError("-o \(name): expected a whole number, at least \(minimum)")
            }
            return number
        }
        for option in extended.flatMap({ $0.split(separator: ",").map(String.init) }) where !option.isEmpty {
            if !option.contains("="), let list = listBeingRead,
                AddressBlock(option) != nil || option.contains(where: { $0 == ":" || $0 == "/" || $0.isNumber })
            {
                if list == "allow" {
                    filter.allow.append(try block(option, list))
                } else {
                    filter.deny.append(try block(option, list))
                }
                continue
            }
            listBeingRead = nil
            let parts = option.split(separator: "=", maxSplits: 1).map(String.init)
            let name = parts[0]
            let value = parts.count > 1 ? parts[1] : nil
            switch name {
            case "allow", "deny":
                guard let value, !value.isEmpty else {
                    throw ConfigurationError("-o \(name): expected addresses, e.g. \(name)=10.0.0.0/8,::1")
                }
                if name == "allow" {
                    filter.allow.append(try block(value, name))
                } else {
                    filter.deny.append(try block(value, name))
                }
                listBeingRead = name
            case "metrics_port":
                let number = try count(name, value, minimum: 1)
                guard number <= 65535 else { throw ConfigurationError("-o metrics_port: 1-65535") }
                metricsPort = number
            case "metrics_listen":
                guard let value, !value.isEmpty, !value.contains(" ") else {
                    throw ConfigurationError("-o metrics_listen: expected an address, e.g. metrics_listen=127.0.0.1")
                }
                metricsHost =
                    value.hasPrefix("[") && value.hasSuffix("]") ? String(value.dropFirst().dropLast()) : value
            case "ssl_chain_cert": sslChain = value
            case "ssl_key": sslKey = value
            case "ssl_ca_cert": sslCA = value
            case "ssl_verify_mode":
                guard let value, let mode = Int(value), (0...3).contains(mode) else {
                    throw ConfigurationError(
                        "-o ssl_verify_mode: expected 0 (none), 1 (request), 2 (require) or 3 (once)")
                }
                sslVerify = mode
            case "ssl_min_version":
                switch value {
                case "tlsv1.2": sslMinimum = "1.2"
                case "tlsv1.3": sslMinimum = "1.3"
                case "tlsv1", "tlsv1.0", "tlsv1.1":
                    throw ConfigurationError(
                        "-o ssl_min_version=\(value!): TLS before 1.2 is broken; Moat accepts tlsv1.2 or tlsv1.3")
                default: throw ConfigurationError("-o ssl_min_version: expected tlsv1.2 or tlsv1.3")
                }
            case "ssl_handshake_timeout": sslHandshakeTimeout = try count(name, value, minimum: 1)
            case "ssl_cert_auth": sslCertAuth = true
            case "ssl_keyformat", "ssl_ciphers", "ssl_session_cache", "ssl_kernel_tls":
                sslIgnored.append("-o \(option)")
            case "security_log":
                guard let value, !value.isEmpty else {
                    throw ConfigurationError("-o security_log: expected stderr, off or a file path")
                }
                securityLog = value
            case "canary":
                // ';' separates keys (',' already separates -o options), so a canary key cannot contain one.
                let keys = (value ?? "").split(separator: ";").map { Array($0.utf8) }
                guard !keys.isEmpty,
                    keys.allSatisfy({
                        !$0.isEmpty && $0.count <= 250 && !$0.contains(where: { $0 <= 0x20 || $0 == 0x7f })
                    })
                else {
                    throw ConfigurationError(
                        "-o canary: expected keys separated by ';' (1-250 bytes each, no spaces or control bytes)")
                }
                canaries += keys
            case "disable_verbosity": verbosityEnabled = false
            case "max_conns_per_ip": maxPerAddress = try count(name, value, minimum: 0)
            case "command_timeout": commandTimeout = try count(name, value, minimum: 0)
            case "output_timeout": outputTimeout = try count(name, value, minimum: 0)
            case "output_budget": outputBudget = try count(name, value, minimum: 0)
            case "idle_timeout":
                guard let value, let seconds = Int(value), seconds >= 0 else {
                    throw ConfigurationError("-o idle_timeout: expected a number of seconds")
                }
                idleTimeout = seconds
            case "insecure_public_bind":
                insecurePublicBind = true
            case "insecure_udp":
                insecureUDP = true
            case "udp_amplification": udp.amplification = try count(name, value, minimum: 1)
            case "udp_rate": udp.datagramsPerSecond = try count(name, value, minimum: 1)
            case "udp_bytes_rate": udp.bytesPerSecond = try count(name, value, minimum: 64)
            case "udp_writes": udp.writes = true
            case "restore_max_age": restoreMaxAge = try count(name, value, minimum: 0)
            case "restore_key":
                guard let value, !value.isEmpty else { throw ConfigurationError("-o restore_key: expected a file") }
                restoreKey = value
            case "lenient_keys":
                lenientKeys = true
            case "io":
                // One connection layer is left (the epoll loops); earlier releases also had SwiftNIO's.
                switch value {
                case "epoll": break
                case "nio":
                    ignored.append(
                        "-o io=nio (the SwiftNIO connection backend was retired; the epoll loops serve every listener)")
                default: throw ConfigurationError("-o io: expected epoll")
                }
            case "sasl_mechs":
                let names = (value ?? "").split(separator: ":").map { $0.uppercased() }
                guard !names.isEmpty, names.allSatisfy(AuthenticationOptions.knownMechanisms.contains) else {
                    throw ConfigurationError(
                        """
                        -o sasl_mechs: expected mechanisms separated by ':' from \
                        \(AuthenticationOptions.knownMechanisms.joined(separator: ", "))
                        """
                    )
                }
                auth.mechanisms = names
            case "auth_timeout": auth.timeout = try count(name, value, minimum: 0)
            case "auth_max_failures": auth.maxFailuresPerConnection = try count(name, value, minimum: 1)
            case "auth_burst": auth.failureBurst = try count(name, value, minimum: 1)
            case "auth_lockout_failures": auth.lockoutFailures = try count(name, value, minimum: 1)
            case "auth_lockout_seconds": auth.lockoutSeconds = try count(name, value, minimum: 0)
            case "auth_delay":
                guard let value, let seconds = Double(value), seconds >= 0, seconds <= 3600 else {
                    throw ConfigurationError("-o auth_delay: expected seconds between 0 and 3600 (fractions allowed)")
                }
                auth.failureDelay = seconds
            case _ where Self.ignoredExtendedOptions.contains(name):
                ignored.append("-o \(option)")
            default:
                throw ConfigurationError("-o \(option): unknown extended option")
            }
        }

        let hostsGiven = listen.flatMap { $0.split(separator: ",").map { String($0).trimmed } }.filter { !$0.isEmpty }
        var listeners: [ListenAddress] = []
        if port != 0 {
            let hosts = hostsGiven.isEmpty ? ServerConfiguration.defaultListenHosts : hostsGiven
            for host in hosts {
                let address = try Self.parseListen(host, defaultPort: port)
                if !listeners.contains(address) { listeners.append(address) }
            }
        }
        if listeners.isEmpty, unixSocket == nil {
            throw ConfigurationError("nothing to listen on: give a TCP port (-p) or a unix socket (-s)")
        }

        if daemon { ignored.append("-d (Moat runs in the foreground; let systemd supervise it)") }
        if maxRequestsPerEvent != nil { ignored.append("-R") }
        if growthFactor != nil { ignored.append("-f") }
        if slabMinSize != nil { ignored.append("-n") }
        if disableCAS { ignored.append("-C") }
        if lockMemory { ignored.append("-k") }
        if enableCoredumps { ignored.append("-r") }
        if largePages { ignored.append("-L") }

        var configuration = ServerConfiguration(
            listeners: listeners, listenersAreDefault: hostsGiven.isEmpty, unixSocket: unixSocket, unixMask: mask,
            memoryLimit: memoryBytes, evictionsEnabled: !disableEvictions, maxConnections: connLimit, threads: threads,
            maxItemSize: itemSize, verbosity: verbose, user: user, protocolMode: mode, shutdownEnabled: enableShutdown,
            flushEnabled: !disableFlushAll, dumpEnabled: false, idleTimeout: idleTimeout,
            insecurePublicBind: insecurePublicBind, lenientKeys: lenientKeys, pidFile: pidFile,
            backlog: max(1, backlog), ignored: ignored)

        if let memoryFile {
            guard !memoryFile.isEmpty else { throw ConfigurationError("-e: expected a file") }
            var snapshot = SnapshotOptions(path: memoryFile)
            snapshot.maxAge = restoreMaxAge ?? SnapshotOptions.defaultMaxAge
            snapshot.keyPath = restoreKey
            configuration.snapshot = snapshot
        } else if restoreMaxAge != nil || restoreKey != nil {
            throw ConfigurationError("-o restore_max_age and restore_key apply to warm restarts: give -e FILE")
        }
        if credentials != nil, authFile != nil {
            throw ConfigurationError("--credentials and -Y: give one source of users, not both")
        }
        if credentials != nil || authFile != nil {
            auth.credentialsPath = credentials
            auth.plaintextPath = authFile
            configuration.authentication = auth
        } else if enableSASL {
            throw ConfigurationError(
                "-S: authentication needs users: --credentials FILE (create it with `moat user add NAME --credentials FILE`) "
                    + "or memcached's plaintext -Y FILE")
        }
        configuration.ignored += sslIgnored
        if enableTLS {
            guard let chain = sslChain else {
                throw ConfigurationError(
                    "-Z: TLS needs a certificate: -o ssl_chain_cert=PEM (and ssl_key=PEM unless the key is in it)")
            }
            if sslVerify > 0, sslCA == nil {
                throw ConfigurationError(
                    """
                    -o ssl_verify_mode=\(sslVerify): client certificates are checked against -o ssl_ca_cert=PEM, \
                    which is missing
                    """
                )
            }
            var tls = TLSOptions(chainCertificate: chain)
            tls.privateKey = sslKey
            tls.caCertificate = sslCA
            tls.verifyMode = sslVerify
            tls.minimumVersion = sslMinimum
            tls.handshakeTimeout = sslHandshakeTimeout
            if sslCertAuth {
                guard sslVerify > 0, credentials != nil || authFile != nil else {
                    throw ConfigurationError(
                        """
                        -o ssl_cert_auth: client certificates log users in only with ssl_verify_mode=1..3, \
                        ssl_ca_cert and users (--credentials FILE)
                        """
                    )
                }
                tls.certificateAuthentication = true
            }
            configuration.tls = tls
        } else if sslChain != nil || sslKey != nil || sslCA != nil || sslCertAuth {
            throw ConfigurationError("-o ssl_*: TLS options given without -Z (--enable-ssl)")
        }
        configuration.addressFilter = filter
        configuration.securityLog = securityLog
        configuration.canaryKeys = canaries
        configuration.verbosityEnabled = verbosityEnabled
        configuration.maxConnectionsPerAddress = maxPerAddress
        configuration.commandTimeout = commandTimeout
        configuration.outputTimeout = outputTimeout
        configuration.outputBudgetMegabytes = min(outputBudget, 1 << 20)
        if udpPort != 0 {
            guard udp.amplification <= 10 else {
                throw ConfigurationError("-o udp_amplification: at most 10 (the default, 3, is QUIC's limit)")
            }
            // Source addresses of UDP are forged at will: only a list of allowed clients makes answering safe.
            guard insecureUDP || (!filter.allow.isEmpty && filter.isRestrictive) else {
                throw ConfigurationError(
                    "-U \(udpPort): UDP answers whatever address a datagram claims to come from, so an open UDP port reflects "
                        + "attacks at third parties. Name the clients that may use it (-o allow=10.0.0.0/8,...), or add "
                            + """
                            -o insecure_udp to answer every source (replies stay within -o udp_amplification times the \
                            request).
                            """
                )
            }
            guard configuration.authentication == nil else {
                throw ConfigurationError(
                    """
                    -U with authentication: UDP cannot authenticate (memcached serves no SASL over UDP); drop -U \
                    or the credentials
                    """
                )
            }
            udp.port = udpPort
            configuration.udp = udp
        } else if insecureUDP || udp != UDPOptions() {
            throw ConfigurationError("-o udp_* or insecure_udp given without -U PORT")
        }
        if let metricsPort {
            let address = ListenAddress(host: metricsHost, port: metricsPort, tls: false)
            // The metrics name no key but show traffic, connections and security counters: the same
            // rule as the cache's own listeners keeps them off other machines unless the clients are named.
            if !address.isLoopback, !insecurePublicBind, filter.allow.isEmpty || !filter.isRestrictive {
                throw ConfigurationError(
                    "-o metrics_listen=\(metricsHost): the metrics endpoint would be reachable from other machines; name who may "
                        + "scrape it (-o allow=...), keep it on loopback (the default), or add -o insecure_public_bind")
            }
            configuration.metrics = address
        } else if metricsHost != "127.0.0.1" {
            throw ConfigurationError("-o metrics_listen needs -o metrics_port=PORT")
        }
        let exposed = configuration.publicListeners
        if !exposed.isEmpty, !insecurePublicBind, configuration.authentication == nil,
            filter.allow.isEmpty || !filter.isRestrictive
        {
            throw ConfigurationError(
                "refusing to listen on \(exposed.map(\.description).joined(separator: ", ")): the address is reachable "
                    + "from other machines and neither authentication nor an allow list is configured. Listen on loopback "
                    + "(the default), require authentication (-S --credentials FILE), name the clients (-o allow=10.0.0.0/8,...), "
                    + "or add -o insecure_public_bind to expose the cache deliberately.")
        }
        return configuration
    }

    /// `1048576`, `512k`, `1m`, `1g` (case-insensitive), as memcached's -I.
    package static func parseSize(_ text: String, flag: String) throws -> Int {
        let lower = text.lowercased()
        var digits = Substring(lower)
        var multiplier = 1
        switch lower.last {
        case "k":
            multiplier = 1024
            digits = digits.dropLast()
        case "m":
            multiplier = 1024 * 1024
            digits = digits.dropLast()
        case "g":
            multiplier = 1024 * 1024 * 1024
            digits = digits.dropLast()
        default: break
        }
        guard let value = Int(digits), value > 0, value <= (1 << 40) / multiplier else {
            throw ConfigurationError("\(flag) \(text): expected a size such as 1048576, 512k or 1m")
        }
        return value * multiplier
    }

    /// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
    package static func parseListen(_ text: String, defaultPort: Int) throws -> ListenAddress {
        // memcached's `notls:` prefix keeps one listener plain when -Z is on.
        if text.hasPrefix("notls:") {
            var address = try parseListen(String(text.dropFirst(6)), defaultPort: defaultPort)
            address.tls = false
            return address
        }
        func port(_ s: Substring) throws -> Int {
            guard let p = Int(s), (1...65535).contains(p) else { throw ConfigurationError("-l \(text): bad port") }
            return p
        }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw ConfigurationError("-l \(text): missing ]") }
            let host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            guard !host.isEmpty else { throw ConfigurationError("-l \(text): empty address") }
            if rest.isEmpty { return ListenAddress(host: host, port: defaultPort) }
            guard rest.first == ":" else { throw ConfigurationError("-l \(text): expected [address]:port") }
            return ListenAddress(host: host, port: try port(rest.dropFirst()))
        }
        let colons = text.filter { $0 == ":" }.count
        if colons == 1 {
            let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            guard !parts[0].isEmpty else { throw ConfigurationError("-l \(text): empty address") }
            return ListenAddress(host: String(parts[0]), port: try port(parts[1]))
        }
        guard !text.isEmpty else { throw ConfigurationError("-l: empty address") }
        // No colon, or a bare IPv6 address.
        return ListenAddress(host: text, port: defaultPort)
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return String(s)
    }
}

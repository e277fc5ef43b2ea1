import MoatConfig
import Testing

@Suite struct ServeOptionsTests {
    func resolve(_ arguments: [String]) throws -> ServerConfiguration {
        try ServeOptions.parse(arguments).resolve()
    }

    @Test func defaultsAreTheSafeOnes() throws {
        let c = try resolve([])
        #expect(
            c.listeners == [ListenAddress(host: "127.0.0.1", port: 11211), ListenAddress(host: "::1", port: 11211)])
        #expect(c.publicListeners.isEmpty)
        #expect(c.memoryLimit == 64 * 1024 * 1024)
        #expect(c.maxItemSize == 1024 * 1024)
        #expect(c.maxConnections == 1024)
        #expect(c.threads == 4)
        #expect(c.shutdownEnabled == false)
        #expect(c.dumpEnabled == false)
        #expect(c.flushEnabled == true)
        #expect(c.unixMask == 0o700)
        #expect(c.user == nil)
    }

    @Test func authenticationFlags() throws {
        #expect(try resolve([]).authentication == nil)
        // -S alone has no users to check against.
        #expect(throws: ConfigurationError.self) { try resolve(["-S"]) }
        let c = try resolve(["-S", "--credentials", "/etc/moat/credentials"])
        #expect(c.authentication?.credentialsPath == "/etc/moat/credentials")
        #expect(c.authentication?.mechanisms == ["SCRAM-SHA-256", "PLAIN"])
        #expect(c.authentication?.timeout == 10)
        #expect(c.authentication?.maxFailuresPerConnection == 3)
        // --credentials alone turns it on too; -Y is memcached's plaintext file (joined form as memcached).
        #expect(try resolve(["--credentials", "f"]).authentication != nil)
        #expect(try resolve(["-Y/etc/memcached.auth"]).authentication?.plaintextPath == "/etc/memcached.auth")
        #expect(throws: ConfigurationError.self) { try resolve(["--credentials", "a", "-Y", "b"]) }
        let tuned = try resolve([
            "-S", "--credentials", "f", "-o",
            "sasl_mechs=scram-sha-256:SCRAM-SHA-1,auth_timeout=0,auth_max_failures=5,auth_burst=2,auth_delay=0.25,auth_lockout_failures=4,auth_lockout_seconds=30",
        ])
        #expect(tuned.authentication?.mechanisms == ["SCRAM-SHA-256", "SCRAM-SHA-1"])
        #expect(tuned.authentication?.timeout == 0)
        #expect(tuned.authentication?.maxFailuresPerConnection == 5)
        #expect(c.authentication?.failureBurst == 3)
        #expect(tuned.authentication?.failureBurst == 2)
        #expect(tuned.authentication?.failureDelay == 0.25)
        #expect(tuned.authentication?.lockoutFailures == 4)
        #expect(tuned.authentication?.lockoutSeconds == 30)
        for bad in [
            "sasl_mechs=CRAM-MD5", "sasl_mechs=", "auth_max_failures=0", "auth_burst=0", "auth_delay=-1",
            "auth_timeout=x",
        ] {
            #expect(throws: ConfigurationError.self) { try resolve(["--credentials", "f", "-o", bad]) }
        }
        #expect(tuned.settingsReport.contains { $0 == ("auth_enabled_sasl", "yes") })
    }

    @Test func publicAddressNeedsAuthenticationOrAnExplicitFlag() throws {
        #expect(throws: ConfigurationError.self) { try resolve(["-l", "10.1.2.3"]) }
        #expect(try resolve(["-l", "10.1.2.3", "-S", "--credentials", "f"]).publicListeners.count == 1)
        #expect(try resolve(["-l", "10.1.2.3", "-o", "insecure_public_bind"]).publicListeners.count == 1)
    }

    @Test func accessControlOptions() throws {
        let c = try resolve([
            "-o", "allow=10.0.0.0/8,::1,192.0.2.7", "-o",
            "deny=10.9.0.0/16,max_conns_per_ip=8,command_timeout=5,output_timeout=0",
        ])
        #expect(c.addressFilter.allow.map(\.description) == ["10.0.0.0/8", "::1", "192.0.2.7"])
        #expect(c.addressFilter.deny.map(\.description) == ["10.9.0.0/16"])
        #expect(c.maxConnectionsPerAddress == 8)
        #expect(c.commandTimeout == 5)
        #expect(c.outputTimeout == 0)
        let defaults = try resolve([])
        #expect(defaults.maxConnectionsPerAddress == 0 && defaults.commandTimeout == 10 && defaults.outputTimeout == 30)
        #expect(defaults.securityLog == "stderr" && defaults.verbosityEnabled && defaults.canaryKeys.isEmpty)
        // A typo in an address is an error, not a silently wider or narrower list.
        #expect(throws: ConfigurationError.self) { try resolve(["-o", "allow=10.0.0.1/8"]) }
        #expect(throws: ConfigurationError.self) { try resolve(["-o", "allow=10.0.0.0/8,10.0.0.300"]) }
        #expect(throws: ConfigurationError.self) { try resolve(["-o", "allow="]) }
        // An allow list opens a public address; a deny list or an allow-everyone list does not.
        #expect(try resolve(["-l", "0.0.0.0", "-o", "allow=10.0.0.0/8"]).publicListeners.count == 1)
        #expect(throws: ConfigurationError.self) { try resolve(["-l", "0.0.0.0", "-o", "deny=10.0.0.0/8"]) }
        #expect(throws: ConfigurationError.self) { try resolve(["-l", "0.0.0.0", "-o", "allow=0.0.0.0/0"]) }
        let logged = try resolve(["-o", "security_log=/var/log/moat.json,canary=trap;admin:pw,disable_verbosity", "-W"])
        #expect(logged.securityLog == "/var/log/moat.json")
        #expect(logged.canaryKeys == [Array("trap".utf8), Array("admin:pw".utf8)])
        #expect(!logged.verbosityEnabled)
        #expect(throws: ConfigurationError.self) { try resolve(["-o", "canary=a b"]) }
    }

    @Test func tlsOptions() throws {
        let c = try resolve([
            "-Z", "-o",
            "ssl_chain_cert=/etc/moat/chain.pem,ssl_key=/etc/moat/key.pem,ssl_ca_cert=/etc/moat/ca.pem,ssl_verify_mode=2",
            "-o", "ssl_min_version=tlsv1.3,ssl_handshake_timeout=5,ssl_ciphers=HIGH", "-l",
            "127.0.0.1,notls:127.0.0.2:11311",
        ])
        #expect(c.tls?.chainCertificate == "/etc/moat/chain.pem")
        #expect(c.tls?.privateKey == "/etc/moat/key.pem")
        #expect(c.tls?.caCertificate == "/etc/moat/ca.pem")
        #expect(c.tls?.verifyMode == 2)
        #expect(c.tls?.minimumVersion == "1.3")
        #expect(c.tls?.handshakeTimeout == 5)
        #expect(c.listeners.map(\.tls) == [true, false])
        #expect(c.listeners.map(\.description) == ["127.0.0.1:11211", "notls:127.0.0.2:11311"])
        #expect(c.ignored.contains("-o ssl_ciphers=HIGH"))
        #expect(try resolve(["-Z", "-o", "ssl_chain_cert=c.pem"]).tls?.minimumVersion == "1.2")
        #expect(try resolve([]).tls == nil)
        let certAuth = try resolve([
            "-Z", "--credentials", "f", "-o", "ssl_chain_cert=c.pem,ssl_ca_cert=ca.pem,ssl_verify_mode=1,ssl_cert_auth",
        ])
        #expect(certAuth.tls?.certificateAuthentication == true)
        #expect(throws: ConfigurationError.self) {
            try resolve(["-Z", "-o", "ssl_chain_cert=c.pem,ssl_ca_cert=ca.pem,ssl_verify_mode=1,ssl_cert_auth"])
        }
        #expect(throws: ConfigurationError.self) {
            try resolve(["-Z", "--credentials", "f", "-o", "ssl_chain_cert=c.pem,ssl_cert_auth"])
        }
        for bad in [
            ["-Z"], ["-o", "ssl_chain_cert=c.pem"], ["-Z", "-o", "ssl_chain_cert=c.pem,ssl_verify_mode=1"],
            ["-Z", "-o", "ssl_chain_cert=c.pem,ssl_min_version=tlsv1.1"],
            ["-Z", "-o", "ssl_chain_cert=c.pem,ssl_verify_mode=4"],
        ] {
            #expect(throws: ConfigurationError.self) { try resolve(bad) }
        }
    }

    @Test func memcachedOptionsLineParses() throws {
        let c = try resolve([
            "-m", "128", "-p", "11311", "-u", "memcache", "-l", "127.0.0.1,::1", "-c", "2048", "-t", "2", "-I", "2m",
            "-M", "-vv", "-U", "0",
        ])
        #expect(c.memoryLimit == 128 * 1024 * 1024)
        #expect(c.listeners.map(\.description) == ["127.0.0.1:11311", "[::1]:11311"])
        #expect(c.user == "memcache")
        #expect(c.maxConnections == 2048)
        #expect(c.threads == 2)
        #expect(c.maxItemSize == 2 * 1024 * 1024)
        #expect(c.evictionsEnabled == false)
        #expect(c.verbosity == 2)
    }

    @Test func joinedShortOptionsAndLongFormsWork() throws {
        let c = try resolve([
            "-p11400", "--memory-limit=32", "--listen", "127.0.0.2:9000", "-l", "[::1]:9001", "--enable-shutdown",
            "--disable-flush-all",
        ])
        #expect(c.listeners.map(\.description) == ["127.0.0.2:9000", "[::1]:9001"])
        #expect(c.memoryLimit == 32 * 1024 * 1024)
        #expect(c.shutdownEnabled)
        #expect(!c.flushEnabled)
    }

    @Test func extendedOptionsParseAndUnknownOnesFail() throws {
        let c = try resolve(["-o", "idle_timeout=30,modern", "-o", "hashpower=20"])
        #expect(c.idleTimeout == 30)
        #expect(c.lenientKeys == false)
        #expect(try resolve(["-o", "lenient_keys"]).lenientKeys)
        #expect(try resolve(["-o", "io=epoll"]).ignored.isEmpty)
        // Retired: warned, not refused.
        #expect(try resolve(["-o", "io=nio"]).ignored.contains { $0.hasPrefix("-o io=nio") })
        #expect(throws: ConfigurationError.self) { try resolve(["-o", "io=kqueue"]) }
        #expect(c.ignored.contains("-o modern"))
        #expect(throws: ConfigurationError.self) { try resolve(["-o", "no_such_option"]) }
        #expect(throws: ConfigurationError.self) { try resolve(["-o", "idle_timeout=soon"]) }
    }

    @Test func publicBindNeedsTheExplicitFlag() throws {
        #expect(throws: ConfigurationError.self) { try resolve(["-l", "0.0.0.0"]) }
        #expect(throws: ConfigurationError.self) { try resolve(["-l", "127.0.0.1,192.0.2.10"]) }
        let opened = try resolve(["-l", "0.0.0.0", "-o", "insecure_public_bind"])
        #expect(opened.publicListeners.count == 1)
        #expect(try resolve(["-l", "127.0.0.5"]).publicListeners.isEmpty)
    }

    @Test func unsafeOrUnsupportedChoicesRefuseToStart() {
        #expect(throws: ConfigurationError.self) { try resolve(["-U", "11211"]) }  // UDP without an allow list
        #expect(throws: ConfigurationError.self) { try resolve(["-I", "40m", "-m", "64"]) }
        #expect(throws: ConfigurationError.self) { try resolve(["-m", "0"]) }
        #expect(throws: ConfigurationError.self) { try resolve(["-a", "999"]) }
        #expect(throws: ConfigurationError.self) { try resolve(["-p", "0"]) }
    }

    @Test func protocolChoicesIncludeBinary() throws {
        let binary = try resolve(["-B", "binary"])
        #expect(binary.protocolMode == .binary)
        #expect(binary.settingsReport.first { $0.0 == "binding_protocol" }?.1 == "binary")
        #expect(binary.exposureSummary(servingAs: "nobody").contains("protocol binary;"))
        let auto = try resolve([])
        #expect(auto.settingsReport.first { $0.0 == "binding_protocol" }?.1 == "auto-negotiate")
        #expect(auto.exposureSummary(servingAs: "nobody").contains("protocol ascii+binary (auto);"))
        #expect(try resolve(["-B", "ascii"]).settingsReport.first { $0.0 == "binding_protocol" }?.1 == "ascii")
        #expect(throws: ConfigurationError.self) { try resolve(["-B", "udp"]) }
    }

    @Test func sizesAndAddressesParse() throws {
        #expect(try ServeOptions.parseSize("1m", flag: "-I") == 1_048_576)
        #expect(try ServeOptions.parseSize("512K", flag: "-I") == 524_288)
        #expect(try ServeOptions.parseSize("2097152", flag: "-I") == 2_097_152)
        #expect(throws: ConfigurationError.self) { try ServeOptions.parseSize("lots", flag: "-I") }
        #expect(try ServeOptions.parseListen("::1", defaultPort: 5) == ListenAddress(host: "::1", port: 5))
        #expect(try ServeOptions.parseListen("[fe80::1]:7", defaultPort: 5) == ListenAddress(host: "fe80::1", port: 7))
        #expect(try ServeOptions.parseListen("localhost", defaultPort: 5).isLoopback)
        #expect(throws: ConfigurationError.self) { try ServeOptions.parseListen("host:notaport", defaultPort: 5) }
    }

    @Test func udpNeedsAnAllowListAndNoAuthentication() throws {
        let udp = try resolve(["-U", "11211", "-o", "allow=10.0.0.0/8"])
        #expect(udp.udp?.port == 11211 && udp.udp?.amplification == 3 && udp.udp?.datagramsPerSecond == 1000)
        #expect(try resolve(["-U", "11211", "-o", "insecure_udp"]).udp != nil)
        let tuned = try resolve([
            "-U", "1", "-o", "allow=127.0.0.1,udp_amplification=1,udp_rate=50,udp_bytes_rate=4096",
        ]).udp
        #expect(tuned?.amplification == 1 && tuned?.datagramsPerSecond == 50 && tuned?.bytesPerSecond == 4096)
        #expect(throws: ConfigurationError.self) { try resolve(["-U", "11211", "-o", "allow=0.0.0.0/0"]) }
        #expect(throws: ConfigurationError.self) {
            try resolve(["-U", "11211", "-o", "allow=10.0.0.0/8,udp_amplification=20"])
        }
        #expect(throws: ConfigurationError.self) {
            try resolve(["-U", "11211", "-o", "insecure_udp", "--credentials", "f"])
        }
        #expect(throws: ConfigurationError.self) { try resolve(["-o", "udp_rate=5"]) }
        #expect(try resolve(["-U", "0"]).udp == nil)
    }
}

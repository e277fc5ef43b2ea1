import MoatAccess
import MoatConfig

/// The kernel firewall formats `moat firewall` writes.
package enum FirewallFormat: String, Sendable, CaseIterable {
    case nftables, iptables, ip6tables, firewalld
}

package struct FirewallError: Error, CustomStringConvertible, Equatable {
    package var description: String
    package init(_ description: String) { self.description = description }
}

/// What the kernel should drop so that it refuses what Moat would refuse: per listener (address,
/// port, TCP or UDP), sources on the deny list, sources off a non-empty allow list, and, for a
/// loopback listener, packets that did not arrive on `lo`. Pure: a configuration in, rules out.
package struct FirewallPlan: Sendable, Equatable {
    package enum Family: String, Sendable { case ipv4, ipv6 }
    package enum Transport: String, Sendable { case tcp, udp }

    /// One port on one destination. `address` nil: every destination of the family (a wildcard bind).
    package struct Port: Sendable, Equatable {
        package var family: Family
        package var address: String?
        package var loopback: Bool
        package var port: Int
        package var transport: Transport
        package var label: String
    }

    package var ports: [Port]
    /// Address blocks by family, as CIDR text.
    package var allowed: [Family: [String]]
    package var denied: [Family: [String]]
    /// True when an allow list exists: a source of a family with no allowed block is refused too.
    package var hasAllowList: Bool
    package var unixSocket: String?

    package init(configuration: ServerConfiguration) throws {
        var ports: [Port] = []
        func add(_ host: String, _ port: Int, _ transport: Transport, label: String) throws {
            for (family, address) in try Self.destinations(host, label: label) {
                let entry = Port(
                    family: family, address: address,
                    loopback: address.map { ListenAddress(host: $0, port: port).isLoopback } ?? false, port: port,
                    transport: transport, label: label)
                if !ports.contains(entry) { ports.append(entry) }
            }
        }
        for listener in configuration.listeners {
            try add(listener.host, listener.port, .tcp, label: "\(listener.description)/tcp")
        }
        if let udp = configuration.udp {
            var hosts: [String] = []
            for listener in configuration.listeners where !hosts.contains(listener.host) { hosts.append(listener.host) }
            for host in hosts {
                try add(host, udp.port, .udp, label: "\(ListenAddress(host: host, port: udp.port).description)/udp")
            }
        }
        if let metrics = configuration.metrics {
            try add(
                metrics.host, metrics.port, .tcp,
                label: "\(ListenAddress(host: metrics.host, port: metrics.port).description)/tcp (metrics)")
        }
        self.ports = ports
        let filter = configuration.addressFilter
        allowed = Self.split(filter.allow)
        denied = Self.split(filter.deny)
        hasAllowList = !filter.allow.isEmpty
        unixSocket = configuration.unixSocket
    }

    /// The (family, address) pairs a listen host stands for; address nil is a wildcard.
    static func destinations(_ host: String, label: String) throws -> [(Family, String?)] {
        switch host {
        case "0.0.0.0": return [(.ipv4, nil)]
        // Both: Moat's epoll and UDP sockets on `::` are IPv6-only, but the metrics endpoint's (SwiftNIO)
        // takes IPv4 too; rules for a family nothing serves drop nothing Moat would take.
        case "::", "[::]": return [(.ipv4, nil), (.ipv6, nil)]
        case "localhost": return [(.ipv4, "127.0.0.1"), (.ipv6, "::1")]
        default:
            guard AddressBlock(host) != nil else {
                throw FirewallError(
                    "\(label): \(host) is a name; give the listener an address (-l 10.0.0.5) so the rules can name it")
            }
            // An IPv4-mapped bind (::ffff:10.0.0.5 or ::ffff:a00:5) receives IPv4 packets, which only an
            // IPv4 rule sees.
            if host.contains(":"), let block = AddressBlock(host), block.prefixLength == 128,
                let v4 = block.mappedIPv4Block
            {
                return [(.ipv4, String(v4.dropLast(3)))]  // drop the "/32"
            }
            return [(host.contains(":") ? .ipv6 : .ipv4, host)]
        }
    }

    /// IPv4 blocks apart from IPv6 ones. An IPv6 block that covers part of `::ffff:0:0/96` (IPv4-mapped)
    /// also yields the IPv4 block it maps: Moat matches IPv4 peers that way, and only an IPv4 rule sees
    /// their packets (`::/0` denies IPv4 too). A block inside the mapped range (or the range itself)
    /// is only IPv4.
    static func split(_ blocks: [AddressBlock]) -> [Family: [String]] {
        var result: [Family: [String]] = [.ipv4: [], .ipv6: []]
        func add(_ family: Family, _ text: String) {
            if !result[family]!.contains(text) { result[family]!.append(text) }
        }
        for block in blocks {
            guard block.description.contains(":") else {
                add(.ipv4, block.description)
                continue
            }
            let v4 = block.mappedIPv4Block
            if let v4 { add(.ipv4, v4) }
            if v4 == nil || block.prefixLength < 96 { add(.ipv6, block.description) }
        }
        return result
    }
}

extension FirewallPlan.Family {
    var nftMatch: String { self == .ipv4 ? "ip" : "ip6" }
    var nftType: String { self == .ipv4 ? "ipv4_addr" : "ipv6_addr" }
    var setSuffix: String { self == .ipv4 ? "v4" : "v6" }
}

/// Renders a plan in each format.
package enum FirewallRules {
    package static func render(_ configuration: ServerConfiguration, format: FirewallFormat, source: String) throws
        -> String
    {
        let plan = try FirewallPlan(configuration: configuration)
        switch format {
        case .nftables: return nftables(plan, source: source)
        case .iptables: return iptables(plan, family: .ipv4, source: source)
        case .ip6tables: return iptables(plan, family: .ipv6, source: source)
        case .firewalld: return firewalld(plan, source: source)
        }
    }

    /// Longest text copied into a comment, in Unicode scalars (at most 4 bytes of UTF-8 each).
    static let commentLimit = 1_024

    /// Text copied from arguments, paths or labels into a comment, with control characters escaped:
    /// a newline in `-P "/tmp/p\n-A INPUT -j ACCEPT"` must not end the comment and start a rule. Cut
    /// short too: iptables-restore reads 10,240-byte pieces of a line, so a longer comment's remainder
    /// would be read as a rule of its own.
    static func commentSafe(_ text: String) -> String {
        var out = ""
        var length = 0
        for scalar in text.unicodeScalars {
            let value = scalar.value
            let piece =
                value < 0x20 || value == 0x7f || (0x80...0x9f).contains(value) || value == 0x2028 || value == 0x2029
                ? "\\x{" + String(value, radix: 16) + "}" : String(scalar)
            length += piece.unicodeScalars.count
            if length > commentLimit { return out + "... (cut short)" }
            out += piece
        }
        return out
    }

    static func header(_ source: String, _ lines: [String]) -> String {
        ([
            "Generated by `moat firewall` from: \(commentSafe(source))",
            "Mirrors Moat's listeners and address lists, so the kernel drops what Moat would refuse anyway.",
        ] + lines)
        .map { "# " + $0 }.joined(separator: "\n") + "\n"
    }

    static func nothingToFilter(_ plan: FirewallPlan) -> String? {
        guard plan.ports.isEmpty else { return nil }
        return "# nothing to filter: no TCP or UDP listener"
            + (plan.unixSocket.map { " (unix socket \(commentSafe($0)) only)" } ?? "") + "\n"
    }

    // MARK: nftables

    package static func nftables(_ plan: FirewallPlan, source: String) -> String {
        var out =
            "#!/usr/sbin/nft -f\n"
            + header(
                source,
                [
                    "Apply: nft -f FILE (applying it again replaces the table). Remove: nft delete table inet moat",
                    """
                    Its own table: it drops, never accepts for other tables, so it cannot open what another table \
                    closes.
                    """,
                ])
        if let nothing = nothingToFilter(plan) { return out + nothing }
        out += "table inet moat\ndelete table inet moat\ntable inet moat {\n"
        for (kind, blocks) in [("allowed", plan.allowed), ("denied", plan.denied)] {
            for family in [FirewallPlan.Family.ipv4, .ipv6] where !(blocks[family] ?? []).isEmpty {
                out +=
                    """
                    \tset \(kind)_\(family.setSuffix) {\n\t\ttype \(family.nftType)\n\t\tflags \
                    interval\n\t\tauto-merge\n
                    """
                out += "\t\telements = { \(blocks[family]!.joined(separator: ", ")) }\n\t}\n"
            }
        }
        out += "\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n"
        for port in plan.ports {
            out += "\t\t# \(commentSafe(port.label))\n"
            let match =
                (port.address.map { "\(port.family.nftMatch) daddr \($0) " } ?? "meta nfproto \(port.family.rawValue) ")
                + "\(port.transport.rawValue) dport \(port.port)"
            // `counter`: `nft list table inet moat` then shows what the kernel dropped.
            if port.loopback { out += "\t\t\(match) iifname != \"lo\" counter drop\n" }
            if !(plan.denied[port.family] ?? []).isEmpty {
                out += "\t\t\(match) \(port.family.nftMatch) saddr @denied_\(port.family.setSuffix) counter drop\n"
            }
            if plan.hasAllowList {
                if (plan.allowed[port.family] ?? []).isEmpty {
                    // An allow list with no block of this family refuses the family.
                    out += "\t\t\(match) counter drop\n"
                } else {
                    out +=
                        "\t\t\(match) \(port.family.nftMatch) saddr != @allowed_\(port.family.setSuffix) counter drop\n"
                }
            } else if !port.loopback && (plan.denied[port.family] ?? []).isEmpty {
                out += "\t\t# open to every source: authentication decides (no allow list)\n"
            }
        }
        out += "\t}\n}\n"
        return out
    }

    // MARK: iptables

    package static func iptables(_ plan: FirewallPlan, family: FirewallPlan.Family, source: String) -> String {
        let command = family == .ipv4 ? "iptables" : "ip6tables"
        let ports = plan.ports.filter { $0.family == family }
        // Only Moat's ports enter the chain, and ahead of INPUT's own rules: an earlier ACCEPT for the
        // port (or for established traffic) must not skip the drops.
        var jumps: [String] = []
        for port in ports {
            let jump =
                "INPUT -p \(port.transport.rawValue) -m \(port.transport.rawValue) --dport \(port.port) -j MOAT-INPUT"
            if !jumps.contains(jump) { jumps.append(jump) }
        }
        let removal = jumps.map { "\(command) -D \($0)" } + ["\(command) -F MOAT-INPUT", "\(command) -X MOAT-INPUT"]
        if let nothing = nothingToFilter(plan) { return header(source, []) + nothing }
        if ports.isEmpty {
            return header(source, []) + "# nothing to filter: no \(family == .ipv4 ? "IPv4" : "IPv6") listener\n"
        }
        var out = header(
            source,
            [
                """
                Apply: \(command)-restore --noflush < FILE  (never without --noflush: it would flush the whole \
                filter table)
                """,
                "Remove (also before applying a new version; restoring twice adds the jumps twice):",
            ] + removal.map { "  " + $0 } + [
                "Allowed sources RETURN to INPUT (this chain accepts nothing itself); the rest of each port is dropped."
            ])
        let hostPrefix = family == .ipv4 ? 32 : 128
        out += "*filter\n:MOAT-INPUT - [0:0]\n" + jumps.map { "-I \($0)\n" }.joined()
        for port in ports {
            out += "# \(commentSafe(port.label))\n"
            let match =
                (port.address.map { "-d \($0)/\(hostPrefix) " } ?? "")
                + "-p \(port.transport.rawValue) -m \(port.transport.rawValue) --dport \(port.port)"
            if port.loopback { out += "-A MOAT-INPUT \(match) ! -i lo -j DROP\n" }
            for block in plan.denied[family] ?? [] { out += "-A MOAT-INPUT \(match) -s \(block) -j DROP\n" }
            if plan.hasAllowList {
                for block in plan.allowed[family] ?? [] { out += "-A MOAT-INPUT \(match) -s \(block) -j RETURN\n" }
                out += "-A MOAT-INPUT \(match) -j DROP\n"
            } else if !port.loopback && (plan.denied[family] ?? []).isEmpty {
                out += "# open to every source: authentication decides (no allow list)\n"
            }
        }
        out += "COMMIT\n"
        return out
    }

    // MARK: firewalld

    package static func firewalld(_ plan: FirewallPlan, source: String) -> String {
        var out =
            "#!/bin/sh\n"
            + header(
                source,
                [
                    "Rich rules for firewalld's default zone (add --zone=NAME to each command for another zone).",
                    """
                    firewalld's zones refuse what no rule accepts, so allowed sources are accepted and denied ones \
                    dropped
                    """,
                    "first (priority -10); loopback listeners need nothing: firewalld leaves lo alone, and other",
                    "interfaces cannot reach a loopback address. Remove: the same commands with --remove-rich-rule.",
                ])
        if let nothing = nothingToFilter(plan) { return out + nothing }
        let reachable = plan.ports.filter { !$0.loopback }
        if reachable.isEmpty { return out + "# nothing to add: every listener is on loopback\n" }
        out += "set -e\n"
        for port in reachable {
            out += "# \(commentSafe(port.label))\n"
            let destination = port.address.map { " destination address=\"\($0)\"" } ?? ""
            let portPart = " port port=\"\(port.port)\" protocol=\"\(port.transport.rawValue)\""
            for block in plan.denied[port.family] ?? [] {
                out += rich(
                    """
                    rule priority=\"-10\" family=\"\(port.family.rawValue)\" source \
                    address=\"\(block)\"\(destination)\(portPart) drop
                    """
                )
            }
            if plan.hasAllowList {
                for block in plan.allowed[port.family] ?? [] {
                    out += rich(
                        """
                        rule family=\"\(port.family.rawValue)\" source \
                        address=\"\(block)\"\(destination)\(portPart) accept
                        """
                    )
                }
            } else {
                out += rich("rule family=\"\(port.family.rawValue)\"\(destination)\(portPart) accept")
            }
        }
        out += "firewall-cmd --reload\n"
        return out
    }

    static func rich(_ rule: String) -> String {
        "firewall-cmd --permanent --add-rich-rule='\(rule)'\n"
    }
}

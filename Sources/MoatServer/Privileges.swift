import NIOCore

#if os(Linux)
import CEpoll
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Moat never serves as root: started as root it binds its ports, then becomes an unprivileged account.
package enum Privileges {
    /// prctl(PR_SET_NO_NEW_PRIVS) for the whole process: call it before any thread exists (threads
    /// inherit it; a thread started earlier would not have it).
    package static func forbidNewPrivileges() throws {
        #if os(Linux)
        guard moat_set_no_new_privs() == 0 else {
            throw Failure(description: "prctl(PR_SET_NO_NEW_PRIVS) failed: \(String(cString: strerror(errno)))")
        }
        #endif
    }

    /// Raises the open-file limit so that `-c` connections fit (as memcached does), while still root
    /// when started as root (which may raise the hard limit too). Returns the soft limit now in effect.
    static func raiseDescriptorLimit(toServe connections: Int) -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
        // Listeners, the epoll and wake-up descriptors, log files, a few for the runtime.
        let needed = rlim_t(connections + 64)
        if limit.rlim_cur < needed {
            var wanted = limit
            wanted.rlim_cur = needed
            if wanted.rlim_max < needed { wanted.rlim_max = needed }
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &wanted) != 0 {
                wanted.rlim_cur = limit.rlim_max  // not root: as far as the hard limit allows
                wanted.rlim_max = limit.rlim_max
                _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &wanted)
            }
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        return Int(limit.rlim_cur)
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// Switches every thread of the process to `name` (or `nobody`) when running as root, dropping
    /// supplementary groups; verifies root cannot be regained. Returns the account now in effect.
    static func dropIfRoot(to name: String?) throws -> String {
        guard geteuid() == 0 || getuid() == 0 else {
            return currentAccountName()
        }
        let target = name ?? "nobody"
        guard let entry = getpwnam(target) else {
            throw Failure(
                description:
                    """
                    cannot switch to account '\(target)': no such user. Moat refuses to serve as root; create the \
                    account or pass -u NAME
                    """
            )
        }
        let uid = entry.pointee.pw_uid
        let gid = entry.pointee.pw_gid
        guard uid != 0 else {
            throw Failure(description: "-u \(target): that account is root; Moat refuses to serve as root")
        }
        // glibc applies these to every thread of the process, including the event loops started already.
        guard setgroups(0, nil) == 0 else {
            throw Failure(description: "setgroups failed: \(String(cString: strerror(errno)))")
        }
        guard setgid(gid) == 0 else {
            throw Failure(description: "setgid(\(gid)) failed: \(String(cString: strerror(errno)))")
        }
        guard setuid(uid) == 0 else {
            throw Failure(description: "setuid(\(uid)) failed: \(String(cString: strerror(errno)))")
        }
        guard getuid() == uid, geteuid() == uid, setuid(0) != 0 else {
            throw Failure(description: "dropping root privileges did not stick; refusing to serve")
        }
        // Leaving root clears every capability (no keep-caps is set; `dropCapabilities` checks it);
        // `forbidNewPrivileges`, called at start, keeps an exec from any thread from regaining one.
        return "\(target) (uid \(uid))"
    }

    /// Empties the capability sets of every thread, then checks that none kept any (else refuses to
    /// serve). Leaving root clears them, but a process started as another account with capabilities
    /// (systemd's `AmbientCapabilities=`, `setpriv --ambient-caps`, file capabilities) keeps them, and
    /// Linux holds them per thread: the event loops (the metrics endpoint's, when there is one), started
    /// before the ports were bound, each drop theirs.
    static func dropCapabilities(eventLoops group: EventLoopGroup?) throws {
        #if os(Linux)
        @Sendable func drop() throws {
            guard moat_drop_thread_capabilities() == 0 else {
                throw Failure(description: "cannot drop capabilities: \(String(cString: strerror(errno)))")
            }
        }
        try drop()
        for loop in group.map({ Array($0.makeIterator()) }) ?? [] {
            try loop.submit { try drop() }.wait()
        }
        // Threads the runtime started (dispatch workers, the main thread waiting on the service group)
        // take no closure from us: they are signalled, only when some thread still holds a capability.
        if !threadsHoldingCapabilities().isEmpty {
            guard moat_drop_capabilities_of_every_thread() == 0 else {
                throw Failure(description: "cannot drop capabilities: \(String(cString: strerror(errno)))")
            }
        }
        let holders = threadsHoldingCapabilities()
        guard holders.isEmpty else {
            throw Failure(
                description:
                    """
                    threads \(holders.prefix(8).joined(separator: ", ")) still hold capabilities after dropping \
                    them; refusing to serve
                    """
            )
        }
        #endif
    }

    /// The ids of this process's threads whose permitted, effective or ambient set is not empty.
    static func threadsHoldingCapabilities() -> [String] {
        guard let directory = opendir("/proc/self/task") else { return ["(cannot read /proc/self/task)"] }
        defer { closedir(directory) }
        var holders: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.first?.isNumber == true else { continue }
            guard let file = fopen("/proc/self/task/\(name)/status", "r") else { continue }  // exited meanwhile
            defer { fclose(file) }
            var line = [CChar](repeating: 0, count: 256)
            while fgets(&line, Int32(line.count), file) != nil {
                let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                let fields = text.split(whereSeparator: { $0 == ":" || $0 == "\t" || $0 == " " || $0 == "\n" })
                guard fields.count == 2, ["CapPrm", "CapEff", "CapAmb"].contains(fields[0]) else { continue }
                if UInt64(fields[1], radix: 16) != 0 {
                    holders.append("\(name) (\(threadName(name)))")
                    break
                }
            }
        }
        return holders
    }

    private static func threadName(_ task: String) -> String {
        guard let file = fopen("/proc/self/task/\(task)/comm", "r") else { return "?" }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 64)
        guard fgets(&line, Int32(line.count), file) != nil else { return "?" }
        return String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func currentAccountName() -> String {
        let uid = getuid()
        if let entry = getpwuid(uid) {
            return "\(String(cString: entry.pointee.pw_name)) (uid \(uid))"
        }
        return "uid \(uid)"
    }
}

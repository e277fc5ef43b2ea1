#if os(Linux)
import CEpoll
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Moat never serves as root: started as root it binds its ports, then becomes an unprivileged account.
public enum Privileges {
    /// prctl(PR_SET_NO_NEW_PRIVS) for the whole process: call it before any thread exists (threads
    /// inherit it; a thread started earlier would not have it).
    public static func forbidNewPrivileges() throws {
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
            throw Failure(description: "cannot switch to account '\(target)': no such user. Moat refuses to serve as root; create the account or pass -u NAME")
        }
        let uid = entry.pointee.pw_uid
        let gid = entry.pointee.pw_gid
        guard uid != 0 else {
            throw Failure(description: "-u \(target): that account is root; Moat refuses to serve as root")
        }
        // glibc applies these to every thread of the process, including the event loops started already.
        guard setgroups(0, nil) == 0 else { throw Failure(description: "setgroups failed: \(String(cString: strerror(errno)))") }
        guard setgid(gid) == 0 else { throw Failure(description: "setgid(\(gid)) failed: \(String(cString: strerror(errno)))") }
        guard setuid(uid) == 0 else { throw Failure(description: "setuid(\(uid)) failed: \(String(cString: strerror(errno)))") }
        guard getuid() == uid, geteuid() == uid, setuid(0) != 0 else {
            throw Failure(description: "dropping root privileges did not stick; refusing to serve")
        }
        // Leaving root clears every capability (no keep-caps is set); `forbidNewPrivileges`, called at
        // start, keeps an exec from any thread from regaining one.
        return "\(target) (uid \(uid))"
    }

    static func currentAccountName() -> String {
        let uid = getuid()
        if let entry = getpwuid(uid) {
            return "\(String(cString: entry.pointee.pw_name)) (uid \(uid))"
        }
        return "uid \(uid)"
    }
}

/// A bucket: a namespace of keys with its own memory quota. Two buckets never share an item.
public struct BucketPlan: Sendable, Equatable {
    public var name: String
    /// Bytes of item memory the bucket may use.
    public var memoryLimit: Int
    /// False: a full bucket refuses stores (`SERVER_ERROR out of memory`) instead of evicting.
    public var evictionsEnabled: Bool

    public init(name: String, memoryLimit: Int, evictionsEnabled: Bool = true) {
        self.name = name
        self.memoryLimit = memoryLimit
        self.evictionsEnabled = evictionsEnabled
    }
}

/// A user the configuration declares: the bucket its connections see and what it may do there.
public struct UserPlan: Sendable, Equatable {
    public var name: String
    public var bucket: String
    public var grant: AccessGrant
    /// Subject common names of client certificates that log in as this user (`-o ssl_cert_auth`).
    public var certificateSubjects: [String]

    public init(name: String, bucket: String, grant: AccessGrant, certificateSubjects: [String] = []) {
        self.name = name
        self.bucket = bucket
        self.grant = grant
        self.certificateSubjects = certificateSubjects
    }
}

/// Who is served from which bucket: what a configuration file's `buckets` and `users` say.
public struct TenantPlan: Sendable, Equatable {
    /// The bucket of connections that name none: clients when authentication is off, and users the
    /// configuration does not place elsewhere.
    public static let defaultBucket = "default"

    /// Named buckets; `default` may be among them to give it an explicit quota.
    public var buckets: [BucketPlan]
    /// nil: every user of the credentials file may log in, to the default bucket, with every permission.
    /// Otherwise only these users may log in.
    public var users: [UserPlan]?

    public init(buckets: [BucketPlan] = [], users: [UserPlan]? = nil) {
        self.buckets = buckets
        self.users = users
    }

    /// Each bucket's quota, the default bucket's included (`total` less the named quotas unless it is
    /// declared; it evicts as `defaultEvicts`, the server's `-M`), or why the plan cannot be served
    /// within `total` bytes.
    public func quotas(total: Int, defaultEvicts: Bool = true) -> Result<[BucketPlan], TenantPlanError> {
        var result: [BucketPlan] = []
        var names: Set<String> = []
        var sum = 0
        for bucket in buckets {
            guard names.insert(bucket.name).inserted else {
                return .failure(.init("bucket \(bucket.name) is declared twice"))
            }
            sum += bucket.memoryLimit
            result.append(bucket)
        }
        guard sum <= total else {
            return .failure(
                .init(
                    """
                    the bucket quotas add up to \(sum / 1_048_576) MiB, more than the memory limit (-m \
                    \(total / 1_048_576))
                    """
                ))
        }
        if !names.contains(Self.defaultBucket) {
            result.insert(
                BucketPlan(name: Self.defaultBucket, memoryLimit: total - sum, evictionsEnabled: defaultEvicts), at: 0)
        }
        for user in users ?? [] {
            if !names.contains(user.bucket) && user.bucket != Self.defaultBucket {
                return .failure(.init("user \(user.name) names bucket \(user.bucket), which is not declared"))
            }
            if user.bucket == Self.defaultBucket, let quota = result.first(where: { $0.name == Self.defaultBucket }),
                quota.memoryLimit < 1_048_576
            {
                return .failure(
                    .init(
                        """
                        user \(user.name) is in bucket default, which the other quotas leave without memory \
                        (declare it, or lower them)
                        """
                    ))
            }
        }
        return .success(result)
    }
}

public struct TenantPlanError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

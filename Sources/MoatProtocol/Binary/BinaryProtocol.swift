/// Constants of memcached's binary protocol (protocol_binary.h).
public enum BinaryMagic {
    public static let request: UInt8 = 0x80
    public static let response: UInt8 = 0x81
    /// Every request and response starts with a 24-byte header.
    public static let headerSize = 24
    /// memcached's limit on a SASL mechanism name (MAX_SASL_MECH_LEN).
    public static let maxSASLMechanismLength = 32
    /// The largest SASL message Moat reads: SCRAM's and PLAIN's are a few hundred bytes.
    public static let maxSASLDataLength = 4096
}

/// The opcodes memcached 1.6 implements.
public enum BinaryOpcode: UInt8, Sendable, CaseIterable {
    case get = 0x00
    case set = 0x01
    case add = 0x02
    case replace = 0x03
    case delete = 0x04
    case increment = 0x05
    case decrement = 0x06
    case quit = 0x07
    case flush = 0x08
    case getQ = 0x09
    case noop = 0x0a
    case version = 0x0b
    case getK = 0x0c
    case getKQ = 0x0d
    case append = 0x0e
    case prepend = 0x0f
    case stat = 0x10
    case setQ = 0x11
    case addQ = 0x12
    case replaceQ = 0x13
    case deleteQ = 0x14
    case incrementQ = 0x15
    case decrementQ = 0x16
    case quitQ = 0x17
    case flushQ = 0x18
    case appendQ = 0x19
    case prependQ = 0x1a
    case verbosity = 0x1b
    case touch = 0x1c
    case gat = 0x1d
    case gatQ = 0x1e
    case saslListMechs = 0x20
    case saslAuth = 0x21
    case saslStep = 0x22
    case gatK = 0x23
    case gatKQ = 0x24
}

/// Response status codes.
public enum BinaryStatus: UInt16, Sendable {
    case ok = 0x00
    case keyNotFound = 0x01
    case keyExists = 0x02
    case valueTooLarge = 0x03
    case invalidArguments = 0x04
    case notStored = 0x05
    case nonNumeric = 0x06
    case authenticationError = 0x20
    /// SASL: the value is a challenge; answer it with a SASL step.
    case authenticationContinue = 0x21
    /// Couchbase's "no access" (memcached's bucket-engine extension): authenticated, but not permitted.
    case accessDenied = 0x24
    case unknownCommand = 0x81
    case outOfMemory = 0x82

    /// The text memcached puts in the body of an error response.
    public var message: StaticString {
        switch self {
        case .ok: return ""
        case .keyNotFound: return "Not found"
        case .keyExists: return "Data exists for key."
        case .valueTooLarge: return "Too large."
        case .invalidArguments: return "Invalid arguments"
        case .notStored: return "Not stored."
        case .nonNumeric: return "Non-numeric server-side value for incr or decr"
        case .authenticationError: return "Auth failure."
        case .authenticationContinue: return ""
        case .accessDenied: return "Permission denied"
        case .unknownCommand: return "Unknown command"
        case .outOfMemory: return "Out of memory"
        }
    }
}

/// A request header, decoded (multi-byte fields are big-endian on the wire).
public struct BinaryHeader: Sendable, Equatable {
    public var magic: UInt8
    public var opcode: UInt8
    public var keyLength: UInt16
    public var extrasLength: UInt8
    public var dataType: UInt8
    /// vbucket id in requests, status in responses.
    public var vbucketOrStatus: UInt16
    public var bodyLength: UInt32
    public var opaque: UInt32
    public var cas: UInt64

    public init(
        magic: UInt8 = BinaryMagic.request, opcode: UInt8, keyLength: UInt16 = 0, extrasLength: UInt8 = 0,
        dataType: UInt8 = 0,
        vbucketOrStatus: UInt16 = 0, bodyLength: UInt32 = 0, opaque: UInt32 = 0, cas: UInt64 = 0
    ) {
        self.magic = magic
        self.opcode = opcode
        self.keyLength = keyLength
        self.extrasLength = extrasLength
        self.dataType = dataType
        self.vbucketOrStatus = vbucketOrStatus
        self.bodyLength = bodyLength
        self.opaque = opaque
        self.cas = cas
    }

    /// Reads the 24 header bytes at the start of `bytes` (the caller checked there are 24).
    @inline(__always)
    public init(parsing bytes: UnsafeRawBufferPointer) {
        magic = bytes[0]
        opcode = bytes[1]
        keyLength = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
        extrasLength = bytes[4]
        dataType = bytes[5]
        vbucketOrStatus = UInt16(bigEndian: bytes.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        bodyLength = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        opaque = UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        cas = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
    }

    /// The opcode when it is one Moat knows.
    public var knownOpcode: BinaryOpcode? { BinaryOpcode(rawValue: opcode) }
}

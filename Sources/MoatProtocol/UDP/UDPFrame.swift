/// memcached's UDP frame header: 8 bytes before the text of every datagram, in network byte order:
/// request id, sequence number, total datagrams in the message, reserved (0).
public struct UDPFrameHeader: Sendable, Equatable {
    public static let size = 8

    public var requestID: UInt16
    public var sequence: UInt16
    public var count: UInt16
    public var reserved: UInt16

    public init(requestID: UInt16, sequence: UInt16 = 0, count: UInt16 = 1, reserved: UInt16 = 0) {
        self.requestID = requestID
        self.sequence = sequence
        self.count = count
        self.reserved = reserved
    }

    /// The header of `datagram`, or nil when it is shorter than a header.
    public init?(_ datagram: UnsafeRawBufferPointer) {
        guard datagram.count >= Self.size else { return nil }
        func field(_ at: Int) -> UInt16 { UInt16(datagram[at]) << 8 | UInt16(datagram[at + 1]) }
        self.init(requestID: field(0), sequence: field(2), count: field(4), reserved: field(6))
    }

    /// A request Moat serves: one datagram (sequence 0 of 1), as every memcached client sends;
    /// memcached itself drops multi-datagram requests too. The reserved field is ignored, as memcached
    /// does (memcaslap puts 0x0100 there).
    public var isSingleDatagramRequest: Bool { sequence == 0 && count == 1 }

    public var bytes: [UInt8] {
        [requestID, sequence, count, reserved].flatMap { [UInt8($0 >> 8), UInt8($0 & 0xFF)] }
    }
}

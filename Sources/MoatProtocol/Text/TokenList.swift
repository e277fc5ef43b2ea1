#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Space-separated tokens inside a command line, seen in place (keys of a multi-get, `stats` arguments).
/// Valid only while the decoder's callback runs.
public struct TokenList: Sequence {
    public let bytes: UnsafeRawBufferPointer

    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }

    public struct Iterator: IteratorProtocol {
        let bytes: UnsafeRawBufferPointer
        var position = 0

        public mutating func next() -> UnsafeRawBufferPointer? {
            guard let base = bytes.baseAddress else { return nil }
            while position < bytes.count, bytes[position] == 0x20 { position += 1 }
            guard position < bytes.count else { return nil }
            let start = position
            // memchr finds the end of a key far faster than a byte loop.
            if let space = memchr(base + start, 0x20, bytes.count - start) {
                position = base.distance(to: UnsafeRawPointer(space))
            } else {
                position = bytes.count
            }
            return UnsafeRawBufferPointer(start: base + start, count: position - start)
        }
    }

    public func makeIterator() -> Iterator { Iterator(bytes: bytes) }

    /// The first token, nil when there is none.
    public var first: UnsafeRawBufferPointer? {
        var iterator = makeIterator()
        return iterator.next()
    }

    /// The tokens as strings (for administrative commands only: this allocates).
    public var strings: [String] { map { String(decoding: $0, as: UTF8.self) } }
}

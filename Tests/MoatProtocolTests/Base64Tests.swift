import MoatProtocol
import MoatTestSupport
import NIOCore
import Testing

/// The one base64 codec: RFC 4648's vectors, the canonical decoder SCRAM and the credential file
/// use, and the meta keys' buffer API agreeing with it.
@Suite struct Base64Tests {
    @Test func rfc4648Vectors() {
        let vectors = [
            ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ]
        for (plain, encoded) in vectors {
            #expect(Base64.encode(b(plain)) == encoded)
            #expect(Base64.decode(encoded) == b(plain))
        }
    }

    @Test func onlyTheCanonicalSpellingDecodes() {
        #expect(Base64.decode("QQ==") == b("A"))
        for bad in ["QR==", "QUJ=", "QQ=", "QQ", "Q Q==", "QQ==\n", "Zm9v====", "Zm=v", "====", "Zm9v!A=="] {
            #expect(Base64.decode(bad) == nil, "\(bad)")
        }
    }

    @Test func bufferAndArrayAPIsAgree() {
        var generator = SeededGenerator(seed: 64)
        for length in 1..<80 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            var buffer = ByteBuffer()
            bytes.withUnsafeBytes { Base64.encode($0, into: &buffer) }
            let text = Base64.encode(bytes)
            #expect(String(buffer: buffer) == text)
            #expect(Base64.decode(text) == bytes)
            let viaBuffer = b(text).withUnsafeBytes { encoded in Base64.withDecoded(encoded) { Array($0) } }
            #expect(viaBuffer == bytes)
        }
    }
}

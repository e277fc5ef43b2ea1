import MoatProtocol
import Testing

@Suite struct UDPFrameTests {
    @Test func headerRoundTrips() {
        let header = UDPFrameHeader(requestID: 0xBEEF, sequence: 2, count: 3, reserved: 0)
        #expect(header.bytes == [0xBE, 0xEF, 0, 2, 0, 3, 0, 0])
        #expect(header.bytes.withUnsafeBytes { UDPFrameHeader($0) } == header)
        #expect(!header.isSingleDatagramRequest)
        #expect(UDPFrameHeader(requestID: 1).isSingleDatagramRequest)
        #expect([UInt8](repeating: 0, count: 7).withUnsafeBytes { UDPFrameHeader($0) } == nil)
    }
}

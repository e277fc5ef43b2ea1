import MoatEngine
import NIOCore

/// Feeds `bytes` to a session in chunks of `chunk` bytes (0: all at once), flushing after every
/// `process` call as a connection does, so that replies past the high-water mark keep flowing.
/// Returns the replies, the last action, and the most bytes one call left to flush.
func drive(_ session: inout Session, _ bytes: [UInt8], chunk: Int = 0) -> (
    replies: [UInt8], action: SessionAction, largestBatch: Int
) {
    var input = ByteBuffer()
    var output = ByteBuffer()
    var sent: [UInt8] = []
    var largestBatch = 0
    var action = SessionAction.needInput
    let step = chunk == 0 ? max(bytes.count, 1) : chunk
    var offset = 0
    repeat {
        let end = min(bytes.count, offset + step)
        input.writeBytes(bytes[offset..<end])
        offset = end
        repeat {
            action = session.process(&input, into: &output)
            largestBatch = max(largestBatch, output.readableBytes)
            sent += output.readableBytesView
            output.clear()
        } while action == .outputFull
        if action == .close || action == .shutdown { break }
    } while offset < bytes.count
    return (sent, action, largestBatch)
}

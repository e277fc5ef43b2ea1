#if os(Linux)
import CEpoll
import Glibc
import Testing

/// `moat_release_code_pages`: the read-only pages it drops come back when used, and the process's
/// resident set shrinks by what it dropped.
@Suite struct ResidentPagesTests {
    func residentKiB() -> Int? {
        guard let file = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(cString: line)
            if text.hasPrefix("VmRSS:") { return Int(text.split(separator: " ", omittingEmptySubsequences: true)[1]) }
        }
        return nil
    }

    @Test func droppedPagesComeBackAndTheResidentSetShrinks() throws {
        let before = try #require(residentKiB())
        let released = moat_release_code_pages()
        // The test binary's own code and read-only data are megabytes.
        #expect(released > 1 << 20)
        let after = try #require(residentKiB())
        #expect(after < before)
        // Code runs again (it faults back in): a sort, string formatting, the status file once more.
        let sorted = (0..<10_000).map { ($0 &* 7919) % 10_007 }.sorted()
        #expect(sorted.first == 0 && "\(sorted.count)" == "10000")
        #expect(residentKiB() != nil)
    }
}
#endif

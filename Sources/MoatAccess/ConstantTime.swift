/// Compares two byte sequences in time that depends only on their lengths, so a wrong secret's
/// timing does not tell a guesser how many leading bytes were right.
public func constantTimeEquals(_ a: some Collection<UInt8>, _ b: some Collection<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    var difference: UInt8 = 0
    for (x, y) in zip(a, b) { difference |= x ^ y }
    return difference == 0
}

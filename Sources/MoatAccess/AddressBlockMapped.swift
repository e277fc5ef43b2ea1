extension AddressBlock {
    /// The prefix length in IPv6 terms (an IPv4 `/n` is `/96+n`, as Moat stores it mapped).
    public var prefixLength: Int { maskHigh.nonzeroBitCount + maskLow.nonzeroBitCount }

    /// The IPv4 block this block covers through the IPv4-mapped range `::ffff:0:0/96` (Moat matches
    /// IPv4 peers as mapped addresses, so `::/0` or `::ffff:a00:0/104` match IPv4 clients), as CIDR
    /// text; nil when it covers no IPv4 address. For an IPv4 block, the block itself.
    public var mappedIPv4Block: String? {
        let prefix = prefixLength
        let mapped: UInt64 = 0x0000_ffff_0000_0000
        if prefix <= 96 {
            // As wide as the mapped range or wider: it holds all of IPv4 or none of it.
            return (0 & maskHigh == high && mapped & maskLow == low) ? "0.0.0.0/0" : nil
        }
        guard high == 0, low >> 32 == 0xffff else { return nil }
        let v4 = UInt32(truncatingIfNeeded: low)
        return "\(v4 >> 24).\((v4 >> 16) & 0xff).\((v4 >> 8) & 0xff).\(v4 & 0xff)/\(prefix - 96)"
    }
}

/// Chunk sizes for items, growing by 1.25 as memcached's slab classes do, up to one page.
/// Items larger than a page are allocated individually (and charged exactly).
struct SizeClasses {
    static let large: UInt8 = 255
    static let smallest = 64
    static let growth = 1.25

    let chunkSizes: [Int]
    let pageSize: Int

    init(pageSize: Int) {
        self.pageSize = pageSize
        var sizes: [Int] = []
        var size = Self.smallest
        while size < pageSize / 2, sizes.count < 200 {
            sizes.append(size)
            var next = Int((Double(size) * Self.growth).rounded(.up))
            next = (next + 7) & ~7
            size = next
        }
        // Chunks start at multiples of their size, so every size but the whole page (one chunk at
        // offset 0) must keep the item header's 8-byte fields aligned.
        let half = (pageSize / 2) & ~7
        if half > (sizes.last ?? 0) { sizes.append(half) }
        sizes.append(pageSize)
        self.chunkSizes = sizes
    }

    /// The class whose chunks hold `size` bytes, or `large`.
    func classFor(size: Int) -> UInt8 {
        guard size <= pageSize else { return Self.large }
        // Binary search: the first chunk size >= size.
        var low = 0
        var high = chunkSizes.count - 1
        while low < high {
            let mid = (low + high) / 2
            if chunkSizes[mid] >= size { high = mid } else { low = mid + 1 }
        }
        return UInt8(low)
    }
}

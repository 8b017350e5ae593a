extension StringProtocol {
    /// Whether `other` occurs in this text (byte-wise, UTF-8). The plugin's
    /// modules do not import _StringProcessing, whose `contains(_:)` on
    /// strings would link 1 MB of regex machinery into every `berth` process.
    public func containsText(_ other: some StringProtocol) -> Bool {
        let needle = Array(other.utf8)
        guard !needle.isEmpty else { return true }
        let hay = Array(utf8)
        guard hay.count >= needle.count else { return false }
        for start in 0...(hay.count - needle.count) where hay[start] == needle[0] {
            if hay[start..<(start + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }
}

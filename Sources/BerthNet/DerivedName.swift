/// Names Berth derives from names it is given (network names, container IDs,
/// interface names) have limits of their own: a file name 255 bytes, an
/// nftables comment 128. A derived name that fits is used as it is, so it
/// stays readable; one that does not becomes a readable prefix, `~` and a
/// digest of the whole (16 hex digits of SHA-256), exactly `limit` bytes.
/// `~` is never part of a valid network name or container ID, so a shortened
/// name cannot equal one used as it is.
public enum DerivedName {
    /// The digest's length in the shortened form.
    public static let digestLength = 16

    /// `text` if it has at most `limit` bytes, else its shortened form.
    /// `limit` must leave room for the digest and one byte of prefix.
    public static func fit(_ text: String, limit: Int) -> String {
        let bytes = Array(text.utf8)
        if bytes.count <= limit { return text }
        let digest = String(SHA256.hex(bytes).prefix(digestLength))
        // The prefix is cut on a character boundary, so it stays valid UTF-8.
        var prefix = ""
        var used = 0
        let room = limit - digestLength - 1
        for scalar in text.unicodeScalars {
            let size = String(scalar).utf8.count
            if used + size > room { break }
            prefix.unicodeScalars.append(scalar)
            used += size
        }
        return prefix + "~" + digest
    }
}

import BerthCNI
import BerthSystem
import BerthJSON
import BerthNet

/// What the store itself can find wrong; the operations' callers say it
/// as CNI errors (`CNIError(ipamError:)`). Failed file operations are
/// `SystemError`s.
public enum StoreError: Error, Equatable, CustomStringConvertible {
    /// The network's name cannot name a directory.
    case badNetworkName(String, String)
    /// A read-only view of a store that does not exist.
    case noStore(network: String, dataDir: String)
    /// A record that does not parse (written by something else, or damaged).
    case unreadableRecord(network: String, path: String)

    public var description: String {
        switch self {
        case .badNetworkName(let network, let problem): "network name \"\(network)\" cannot name a store: \(problem)"
        case .noStore(let network, let dataDir): "network \(network) has no IPAM store under \(dataDir)"
        case .unreadableRecord(let network, let path): "IPAM store of network \(network): the record \(path) is unreadable"
        }
    }
}

/// Who an allocation belongs to: one interface of one container.
public struct AttachmentKey: Hashable, Sendable, CustomStringConvertible {
    public var containerID: String
    public var ifname: String

    public init(containerID: String, ifname: String) {
        self.containerID = containerID
        self.ifname = ifname
    }

    /// The record's file name: `ID:IFNAME`, shortened to a prefix and a
    /// digest (`DerivedName`) when longer than a file name can be. Neither
    /// part may contain ':' (CNI forbids it in both), so the name is unambiguous.
    var fileName: String { DerivedName.fit("\(containerID):\(ifname)", limit: AttachmentKey.fileNameLimit) }

    /// The key a record's file name spells, when it is not a shortened one.
    init?(fileName: String) {
        guard let colon = fileName.firstIndex(of: ":") else { return nil }
        containerID = String(fileName[..<colon])
        ifname = String(fileName[fileName.index(after: colon)...])
        if self.fileName != fileName { return nil }
    }

    public var description: String { "container \(containerID) interface \(ifname)" }

    /// The longest file name Linux file systems take.
    static let fileNameLimit = 255
}

/// What a store records for one attachment: its addresses with their gateways.
public struct AttachmentRecord: Equatable, Sendable {
    public var key: AttachmentKey
    public var ips: [CNIResult.IPConfig]

    func json() -> JSON {
        .object([
            "containerID": .string(key.containerID),
            "ifname": .string(key.ifname),
            "ips": .array(ips.map { ip in
                var o: JSONObject = ["address": .string(ip.address.description)]
                if let gw = ip.gateway { o["gateway"] = .string(gw.description) }
                return .object(o)
            }),
        ])
    }

    init(key: AttachmentKey, ips: [CNIResult.IPConfig]) {
        self.key = key
        self.ips = ips
    }

    init?(json: JSON) {
        guard let id = json["containerID"]?.stringValue, let ifname = json["ifname"]?.stringValue,
              let list = json["ips"]?.arrayValue else { return nil }
        var ips: [CNIResult.IPConfig] = []
        for item in list {
            guard let a = item["address"]?.stringValue, let address = IPPrefix(a) else { return nil }
            ips.append(CNIResult.IPConfig(address: address, gateway: item["gateway"]?.stringValue.flatMap(IPAddress.init)))
        }
        self.init(key: AttachmentKey(containerID: id, ifname: ifname), ips: ips)
    }
}

/// The persistent allocations of one network, under `DATADIR/NETWORK/`:
///
///     lock                       flock'd by every operation (process-safe)
///     attachments/ID:IFNAME      the attachment's record (JSON), written before any address is claimed
///     addresses/IP               a hard link to the record of the attachment holding IP
///                                (stores of earlier versions: a file "ID\nIFNAME\n")
///     cursor-N                   the last address handed out from range set N (round-robin hint)
///     scratch/                   records being written; published by rename
///
/// A record appears whole or not at all (written in scratch/, then renamed
/// into place), and an address is claimed by hard-linking the record under
/// the address's name: one atomic, exclusive `linkat` that creates no inode.
/// So a process killed at any instant leaves no torn record and no address
/// without a record that DEL or GC can find. The cursor is only a hint,
/// rewritten in place; a torn cursor is ignored and the scan starts at the
/// range's beginning. One ADD creates one inode (the record): on ext4,
/// allocating an inode is by far the dearest file operation.
/// Every lookup is by name: the cost of ADD, DEL and CHECK does not depend on
/// how many allocations there are. Only GC and listing read whole directories.
public final class AllocationStore {
    public let network: String
    public let directory: DirectoryHandle
    let attachments: DirectoryHandle
    let addresses: DirectoryHandle
    let scratch: DirectoryHandle
    private let lockHandle: OwnedDescriptor

    /// Opens the store of `network` under `dataDir` and takes its lock, held
    /// until the store is released. With `create` false, a missing store is
    /// an error instead of being made (for read-only views).
    public init(dataDir: String, network: String, create: Bool = true) throws {
        if let problem = NetworkConfig.networkNameProblem(network) {
            throw StoreError.badNetworkName(network, problem)
        }
        self.network = network
        let path = "\(dataDir)/\(AllocationStore.directoryName(network: network))"
        if !create, try !DirectoryHandle(path: dataDir, create: false).exists(AllocationStore.directoryName(network: network)) {
            throw StoreError.noStore(network: network, dataDir: dataDir)
        }
        directory = try DirectoryHandle(path: path, create: create)
        lockHandle = try directory.lock("lock")
        attachments = try directory.subdirectory("attachments")
        addresses = try directory.subdirectory("addresses")
        scratch = try directory.subdirectory("scratch")
    }

    /// The store's directory under the data directory: the network's name,
    /// shortened (`DerivedName`) when longer than a file name can be.
    public static func directoryName(network: String) -> String {
        DerivedName.fit(network, limit: AttachmentKey.fileNameLimit)
    }

    // MARK: Records

    public func record(for key: AttachmentKey) throws -> AttachmentRecord? {
        guard let bytes = try attachments.read(key.fileName) else { return nil }
        guard let json = try? JSON.parse(bytes), let record = AttachmentRecord(json: json) else {
            throw StoreError.unreadableRecord(network: network, path: "\(attachments.path)/\(key.fileName)")
        }
        return record
    }

    public func write(_ record: AttachmentRecord) throws {
        let bytes = Array(record.json().serialized().utf8)
        let name = try scratch.writeScratch(bytes)
        try scratch.publish(name, as: record.key.fileName, in: attachments)
    }

    public func removeRecord(_ key: AttachmentKey) throws {
        _ = try attachments.remove(key.fileName)
    }

    /// The keys of every record: spelled by the file name, or for a
    /// shortened name, read from the record (an unreadable one is left out).
    public func allRecordKeys() throws -> [AttachmentKey] {
        var keys: [AttachmentKey] = []
        for name in try attachments.names() {
            if let key = AttachmentKey(fileName: name) {
                keys.append(key)
            } else if let bytes = try? attachments.read(name), let json = try? JSON.parse(bytes),
                      let record = AttachmentRecord(json: json), record.key.fileName == name {
                keys.append(record.key)
            }
        }
        return keys
    }

    // MARK: Addresses

    /// Who holds `ip`, or nil when it is free.
    public func owner(of ip: IPAddress) throws -> AttachmentKey? {
        guard let bytes = try addresses.read(ip.description) else { return nil }
        return AllocationStore.holder(in: bytes)
    }

    /// The holder named by an address file: the record it is a link to, or
    /// the two lines of earlier stores. Anything else is not one of ours:
    /// the address stays out of use (an empty key) and GC may reclaim it.
    static func holder(in bytes: [UInt8]) -> AttachmentKey {
        if bytes.first == UInt8(ascii: "{") {
            guard let json = try? JSON.parse(bytes), let record = AttachmentRecord(json: json) else {
                return AttachmentKey(containerID: "", ifname: "")
            }
            return record.key
        }
        let lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 2 else { return AttachmentKey(containerID: "", ifname: "") }
        return AttachmentKey(containerID: String(lines[0]), ifname: String(lines[1]))
    }

    public func isTaken(_ ip: IPAddress) throws -> Bool {
        try addresses.exists(ip.description)
    }

    /// Takes `ip` for `key`, whose record must be written already: the
    /// address becomes a hard link to that record. Returns false when someone
    /// holds it already.
    public func claim(_ ip: IPAddress, for key: AttachmentKey) throws -> Bool {
        try attachments.linkExclusive(key.fileName, as: ip.description, in: addresses)
    }

    /// Frees `ip` if `key` holds it; returns whether it did.
    @discardableResult
    public func release(_ ip: IPAddress, heldBy key: AttachmentKey) throws -> Bool {
        guard try owner(of: ip) == key else { return false }
        return try addresses.remove(ip.description)
    }

    /// Every taken address with its holder. Reads the whole directory.
    public func allAddresses() throws -> [(ip: IPAddress, owner: AttachmentKey?)] {
        var out: [(ip: IPAddress, owner: AttachmentKey?)] = []
        for name in try addresses.names() {
            guard let ip = IPAddress(name) else { continue }
            out.append((ip, try owner(of: ip)))
        }
        return out.sorted { $0.ip < $1.ip }
    }

    /// Removes `ip` whoever holds it (GC of orphans).
    public func forceRelease(_ ip: IPAddress) throws {
        _ = try addresses.remove(ip.description)
    }

    // MARK: Round-robin cursor

    public func cursor(forSet index: Int) throws -> IPAddress? {
        guard let bytes = try directory.read("cursor-\(index)") else { return nil }
        return IPAddress(String(decoding: bytes.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self))
    }

    /// Every cursor file is this long: the address, then newlines. Rewriting
    /// a fixed length in place never truncates the file, and on ext4 with
    /// `discard` a truncate waits for the disk to discard the freed block.
    static let cursorLength = 40

    /// Rewrites the cursor in place: no new inode, no truncation. A crash may
    /// tear it; `cursor(forSet:)` then reads nothing valid and the scan
    /// starts at the range's beginning.
    public func setCursor(_ ip: IPAddress, forSet index: Int) throws {
        var bytes = Array(ip.description.utf8)
        bytes += Array(repeating: UInt8(ascii: "\n"), count: max(1, AllocationStore.cursorLength - bytes.count))
        try directory.overwrite("cursor-\(index)", with: bytes)
    }

    /// Removes scratch files of processes killed while writing. Only called
    /// under the lock, when no other writer can be active.
    public func sweepScratch() throws {
        for name in try scratch.names() { try scratch.remove(name) }
    }
}

import BerthCNI
import BerthSystem
import BerthNet

/// `berth-ipam`'s operations on one network's store. Used by the
/// `berth-ipam` executable and, in-process, by `berth`.
public struct AddressAllocator {
    public let config: IPAMConfig

    /// How many candidates ADD and STATUS look at before calling a range set
    /// full. Ranges are walked lazily, so a huge IPv6 range costs nothing.
    public static let scanLimit = 1 << 20

    public init(config: IPAMConfig) {
        self.config = config
    }

    func openStore() throws -> AllocationStore {
        try AllocationStore(dataDir: config.dataDir, network: config.network.name)
    }

    public static func key(_ env: CNIEnvironment) -> AttachmentKey {
        AttachmentKey(containerID: env.containerID, ifname: env.ifname)
    }

    /// The attachments a GC request lists as valid.
    public static func validKeys(_ reader: FieldReader) throws -> Set<AttachmentKey> {
        Set(try NetworkConfig.validAttachments(reader).map { AttachmentKey(containerID: $0.containerID, ifname: $0.ifname) })
    }

    /// ADD: one address per range set. A repeated ADD for the same container
    /// and interface returns the addresses it already has.
    public func add(_ key: AttachmentKey) throws -> CNIResult {
        try allocate(key).result
    }

    /// What ADD did: the result, and whether the addresses are new (false
    /// when the attachment held them already), so that a caller that fails
    /// later releases only what its own ADD took.
    public struct Allocation {
        public var result: CNIResult
        public var isNew: Bool
    }

    /// ADD, telling whether it took new addresses.
    public func allocate(_ key: AttachmentKey) throws -> Allocation {
        let store = try openStore()
        if let existing = try store.record(for: key) {
            var intact = !existing.ips.isEmpty
            for ip in existing.ips where try store.owner(of: ip.address.address) != key { intact = false }
            if intact && existing.ips.count == config.rangeSets.count {
                return Allocation(result: result(existing.ips), isNew: false)
            }
            // An interrupted or stale allocation: start again from nothing.
            for ip in existing.ips { try store.release(ip.address.address, heldBy: key) }
            try store.removeRecord(key)
        }

        var chosen: [(ip: CNIResult.IPConfig, set: Int, requested: Bool)] = []
        for (index, set) in config.rangeSets.enumerated() {
            if let wanted = config.requested.first(where: { set.isAllocatable($0) }) {
                if let holder = try store.owner(of: wanted), holder != key {
                    throw CNIError(.invalidNetworkConfig, "requested address \(wanted) of network \(config.network.name) is already allocated to \(holder)")
                }
                chosen.append((ipConfig(wanted, in: set), index, true))
                continue
            }
            let (found, looked) = try firstFree(in: set, index: index, store: store)
            guard let found else {
                throw CNIError(.tryAgainLater, "network \(config.network.name): no free address in range set \(set)",
                               details: looked >= AddressAllocator.scanLimit ? "looked at \(looked) addresses" : "every address is allocated")
            }
            chosen.append((ipConfig(found, in: set), index, false))
        }

        // The record first: from here on, DEL or GC can find whatever gets claimed.
        let ips = chosen.map(\.ip)
        try store.write(AttachmentRecord(key: key, ips: ips))
        for item in chosen {
            let ip = item.ip.address.address
            if try !store.claim(ip, for: key), try store.owner(of: ip) != key {
                throw CNIError(.tryAgainLater, "network \(config.network.name): address \(ip) was taken while allocating")
            }
            if !item.requested { try store.setCursor(ip, forSet: item.set) }
        }
        return Allocation(result: result(ips), isNew: true)
    }

    /// DEL: releases what `key` holds; nothing held is not an error.
    public func del(_ key: AttachmentKey) throws {
        let store = try openStore()
        guard let record = try store.record(for: key) else { return }
        for ip in record.ips { try store.release(ip.address.address, heldBy: key) }
        try store.removeRecord(key)
    }

    /// CHECK: the attachment's record exists and it holds every address in it.
    public func check(_ key: AttachmentKey) throws {
        let store = try openStore()
        guard let record = try store.record(for: key) else {
            throw CNIError(.checkFailed, "network \(config.network.name) has no allocation for \(key)")
        }
        for ip in record.ips {
            let holder = try store.owner(of: ip.address.address)
            if holder != key {
                throw CNIError(.checkFailed, "address \(ip.address) of \(key) is "
                               + (holder == nil ? "not allocated" : "allocated to \(holder!)"))
            }
        }
    }

    /// GC: releases every allocation whose attachment is not in `valid`, and
    /// any address file without a record of a valid attachment behind it.
    /// Keeps going past single failures and reports the first at the end.
    /// Returns how many addresses it released.
    @discardableResult
    public func gc(keeping valid: Set<AttachmentKey>) throws -> Int {
        let store = try openStore()
        try store.sweepScratch()
        var released = 0
        var firstError: (any Error)?
        for key in try store.allRecordKeys() where !valid.contains(key) {
            do {
                if let record = try? store.record(for: key) {
                    for ip in record.ips where try store.release(ip.address.address, heldBy: key) { released += 1 }
                }
                try store.removeRecord(key)
            } catch {
                firstError = firstError ?? error
            }
        }
        for (ip, owner) in try store.allAddresses() {
            if let owner, valid.contains(owner) { continue }
            do {
                try store.forceRelease(ip)
                released += 1
            } catch {
                firstError = firstError ?? error
            }
        }
        if let firstError { throw firstError }
        return released
    }

    /// STATUS: the store is usable and every range set has a free address.
    public func status() throws {
        let store: AllocationStore
        do {
            store = try openStore()
        } catch {
            throw CNIError(.notAvailable, "network \(config.network.name): the IPAM store is not usable",
                           details: (error as? CNIError)?.msg ?? "\(error)")
        }
        for (index, set) in config.rangeSets.enumerated() {
            if try firstFree(in: set, index: index, store: store).address == nil {
                throw CNIError(.notAvailable, "network \(config.network.name): no free address in range set \(set)")
            }
        }
    }

    /// The first free address of range set `index` after its cursor, and how
    /// many taken ones were passed; nil after `scanLimit` candidates or at the
    /// end of the range.
    private func firstFree(in set: RangeSet, index: Int, store: AllocationStore) throws -> (address: IPAddress?, looked: Int) {
        var looked = 0
        for candidate in set.candidates(after: try store.cursor(forSet: index)) {
            if try !store.isTaken(candidate) { return (candidate, looked) }
            looked += 1
            if looked >= AddressAllocator.scanLimit { break }
        }
        return (nil, looked)
    }

    /// Every allocation of the network, for listing.
    public func allocations() throws -> [(ip: IPAddress, owner: AttachmentKey?)] {
        try openStore().allAddresses()
    }

    func ipConfig(_ ip: IPAddress, in set: RangeSet) -> CNIResult.IPConfig {
        let range = set.range(containing: ip)!
        return CNIResult.IPConfig(address: IPPrefix(address: ip, prefixLength: range.subnet.prefixLength)!,
                                  gateway: range.gateway)
    }

    func result(_ ips: [CNIResult.IPConfig]) -> CNIResult {
        CNIResult(ips: ips, routes: config.routes, dns: dns())
    }

    /// DNS from `resolvConf`, if configured and readable.
    func dns() -> CNIResult.DNS {
        guard let path = config.resolvConf,
              let file = try? OwnedDescriptor(openingForReading: path), let bytes = try? file.readAll()
        else { return CNIResult.DNS() }
        return ResolvConf.parse(String(decoding: bytes, as: UTF8.self))
    }
}

/// Reads resolv.conf(5) text: nameserver, domain, search and options lines.
public enum ResolvConf {
    public static func parse(_ text: String) -> CNIResult.DNS {
        var dns = CNIResult.DNS()
        for line in text.split(separator: "\n") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
            guard let first = words.first, !first.hasPrefix("#"), !first.hasPrefix(";") else { continue }
            let rest = Array(words.dropFirst())
            switch first {
            case "nameserver": dns.nameservers += rest.prefix(1)
            case "domain": dns.domain = rest.first ?? ""
            case "search": dns.search = rest
            case "options": dns.options += rest
            default: break
            }
        }
        return dns
    }
}

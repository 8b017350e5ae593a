import BerthNet
import BerthCNI
import BerthSystem

/// The rules Berth installs for one attachment, all tagged with a comment
/// `berth:NETWORK:CONTAINERID:IFNAME` so that DEL and GC find them without
/// the container's namespace, its interface or its addresses.
///
/// - Masquerade (`ipMasq`): with nftables, in `NFTChain.masquerade` (table
///   `inet berth`, chain `postrouting`, nat hook); with iptables, in chain
///   `BERTH-MASQ` of the nat table, jumped to from POSTROUTING. Traffic from
///   the container's address to anywhere outside its subnet (and not
///   multicast) is masqueraded.
/// - MAC spoof check (`macspoofchk`): in `NFTChain.macSpoof` (table `bridge
///   berth`, chain `prerouting`): frames entering from the host veth with
///   another source MAC are dropped.
public struct AttachmentRules: Sendable {
    public static let iptablesChain = "BERTH-MASQ"

    /// The attachment whose rules these are.
    public let attachment: CNIAttachmentKey

    public init(_ attachment: CNIAttachmentKey) { self.attachment = attachment }

    public var network: String { attachment.network }
    public var containerID: String { attachment.containerID }
    public var ifname: String { attachment.ifname }

    /// nftables refuses a rule comment longer than 128 bytes (iptables' comment
    /// match takes 255); every comment Berth writes fits the smaller.
    public static let commentLimit = 128
    /// The network's part of a comment at most: a longer name is shortened
    /// (`DerivedName`), the same way in every rule of the network.
    static let networkPartLimit = 48

    /// `berth:NETWORK:CONTAINERID:IFNAME` when that fits in `commentLimit`;
    /// otherwise the network part and the attachment part are each shortened
    /// to a readable prefix and a digest (`DerivedName`). Network and
    /// container ID are restricted to `[A-Za-z0-9_.-]` by validation; the
    /// interface name may hold other characters, so it is hex-encoded when it
    /// does, keeping the comment safe inside a rule.
    public var comment: String {
        let prefix = AttachmentRules.prefix(network: network)
        return prefix + DerivedName.fit("\(containerID):\(AttachmentRules.encode(ifname))",
                                        limit: AttachmentRules.commentLimit - prefix.utf8.count)
    }

    /// What every comment of `network` starts with.
    static func prefix(network: String) -> String {
        "berth:\(DerivedName.fit(network, limit: networkPartLimit)):"
    }

    static func encode(_ name: String) -> String {
        let safe = name.utf8.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F || b == 0x2E
        }
        if safe { return name }
        return "x" + hexString(name.utf8)
    }

    // MARK: Masquerade

    /// Masquerades traffic from each of `addresses` (the container's, with
    /// its subnet's prefix length) that leaves the subnet.
    public func addMasquerade(_ addresses: [IPPrefix], backend: FirewallBackend) throws(FirewallError) {
        guard !addresses.isEmpty else { return }
        switch backend {
        case .nftables:
            let chain = NFTChain.masquerade
            var transaction = NFTTransaction()
            transaction.add(chain)
            for a in addresses {
                let (ip, multicast) = a.family == .v4 ? ("ip", "224.0.0.0/4") : ("ip6", "ff00::/8")
                transaction.addRule("\(ip) saddr \(a.address) \(ip) daddr != \(a.network) \(ip) daddr != \(multicast) masquerade",
                                    to: chain.name, in: chain.table, comment: comment)
            }
            try transaction.commit()
        case .iptables:
            for a in addresses {
                let tool = try IPTables(family: a.family)
                try tool.ensureChain()
                let multicast = a.family == .v4 ? "224.0.0.0/4" : "ff00::/8"
                try tool.run(["-A", AttachmentRules.iptablesChain, "-s", a.address.description, "-d", multicast,
                              "-m", "comment", "--comment", comment, "-j", "RETURN"])
                try tool.run(["-A", AttachmentRules.iptablesChain, "-s", a.address.description, "!", "-d", a.network.description,
                              "-m", "comment", "--comment", comment, "-j", "MASQUERADE"])
            }
        }
    }

    // MARK: MAC spoof check

    /// Drops frames entering the bridge from `hostInterface` whose source MAC is not `mac`.
    public func addMacSpoofCheck(hostInterface: String, mac: String) throws(FirewallError) {
        let chain = NFTChain.macSpoof
        var transaction = NFTTransaction()
        transaction.add(chain)
        transaction.addRule("iifname \"\(hostInterface)\" ether saddr != \(mac) drop", to: chain.name, in: chain.table, comment: comment)
        try transaction.commit()
    }

    // MARK: Finding and removing

    /// How many of this attachment's rules exist: masquerade (in `backend`) and MAC spoof.
    public func count(backend: FirewallBackend) throws(FirewallError) -> (masquerade: Int, macSpoof: Int) {
        let nft = try NFTContext(json: true)
        let spoof = try nft.rules(in: NFTChain.macSpoof.table).filter { $0.comment == comment }.count
        switch backend {
        case .nftables:
            let masq = try nft.rules(in: NFTChain.masquerade.table).filter { $0.comment == comment }.count
            return (masq, spoof)
        case .iptables:
            var masq = 0
            for family in [IPAddress.Family.v4, .v6] {
                guard let tool = try? IPTables(family: family) else { continue }
                masq += try tool.rules().filter { $0.comment == comment && $0.args.contains("MASQUERADE") }.count
            }
            return (masq, spoof)
        }
    }

    /// Removes every rule of this attachment from Berth's nftables tables
    /// and, with the iptables backend, from BERTH-MASQ. Nothing to remove is not an error.
    public func removeAll(backend: FirewallBackend) throws(FirewallError) {
        let own = comment
        try AttachmentRules.remove(network: network, iptables: backend == .iptables) { $0 == own }
    }

    /// GC: removes the rules of `network` whose attachment (container ID and
    /// interface name) is not in `valid`, from nftables and iptables.
    public static func removeAll(network: String, except valid: [(containerID: String, ifname: String)]) throws(FirewallError) {
        let keep = Set(valid.map { AttachmentRules(CNIAttachmentKey(network: network, containerID: $0.containerID, ifname: $0.ifname)).comment })
        try remove(network: network, iptables: true) { !keep.contains($0) }
    }

    /// Removes the rules of `network` whose comment `matches`.
    static func remove(network: String, iptables: Bool, where matches: (String) -> Bool) throws(FirewallError) {
        let prefix = AttachmentRules.prefix(network: network)
        func ours(_ comment: String) -> Bool { comment.hasPrefix(prefix) && matches(comment) }
        let nft = try NFTContext(json: true)
        var deletions = NFTTransaction()
        for table in [NFTChain.masquerade.table, NFTChain.macSpoof.table] {
            for rule in try nft.rules(in: table) where ours(rule.comment) {
                deletions.deleteRule(handle: rule.handle, from: rule.chain, in: table)
            }
        }
        try deletions.commit()
        guard iptables else { return }
        for family in [IPAddress.Family.v4, .v6] {
            guard let tool = try? IPTables(family: family) else { continue }
            for rule in try tool.rules() where ours(rule.comment) {
                try tool.run(["-D"] + rule.args.dropFirst())
            }
        }
    }
}

/// iptables or ip6tables, run as a command with an argument list (no shell),
/// waiting for the xtables lock.
struct IPTables {
    let path: String

    init(family: IPAddress.Family) throws(FirewallError) {
        let name = family == .v4 ? "iptables" : "ip6tables"
        guard let path = findExecutable(name, in: ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]) else {
            throw FirewallError(operation: name, message: "\(name) is not installed (needed by \"ipMasqBackend\": \"iptables\")")
        }
        self.path = path
    }

    @discardableResult
    func run(_ args: [String]) throws(FirewallError) -> String {
        let output: ChildOutput
        do {
            output = try runExecutable(path, arguments: ["-w", "-t", "nat"] + args,
                                       environment: ["PATH": defaultExecutablePath], input: [],
                                       discardStandardError: true)
        } catch {
            throw FirewallError(operation: path, message: "\(error)")
        }
        if output.status != 0 {
            throw FirewallError(operation: "\(path) \(args.joined(separator: " "))", message: "exit status \(output.status)")
        }
        return String(decoding: output.stdout, as: UTF8.self)
    }

    /// Creates BERTH-MASQ and the POSTROUTING jump to it when missing.
    func ensureChain() throws(FirewallError) {
        if (try? run(["-S", AttachmentRules.iptablesChain])) == nil {
            _ = try? run(["-N", AttachmentRules.iptablesChain])
        }
        if (try? run(["-C", "POSTROUTING", "-j", AttachmentRules.iptablesChain])) == nil {
            try run(["-A", "POSTROUTING", "-j", AttachmentRules.iptablesChain])
        }
    }

    /// The rules of BERTH-MASQ as argument lists ("-A", chain, ...), with their comments.
    func rules() throws(FirewallError) -> [(args: [String], comment: String)] {
        guard let listing = try? run(["-S", AttachmentRules.iptablesChain]) else { return [] }
        return listing.split(separator: "\n").compactMap { line in
            let args = IPTables.split(String(line))
            guard args.first == "-A", let i = args.firstIndex(of: "--comment"), i + 1 < args.count else { return nil }
            return (args, args[i + 1])
        }
    }

    /// Splits an `iptables -S` line into arguments, honouring double quotes.
    static func split(_ line: String) -> [String] {
        var out: [String] = []
        var current = ""
        var quoted = false
        var escaped = false
        for c in line {
            if escaped { current.append(c); escaped = false; continue }
            if c == "\\" { escaped = true; continue }
            if c == "\"" { quoted.toggle(); continue }
            if c == " " && !quoted {
                if !current.isEmpty { out.append(current); current = "" }
                continue
            }
            current.append(c)
        }
        if !current.isEmpty { out.append(current) }
        return out
    }
}

import BerthNet

/// What a set of policies becomes in nftables, as data (the firewall
/// module writes it). One table; what varies with pods is only in sets:
///
/// - each group (`PodGroup`) is two sets of addresses, `<id>4` and `<id>6`;
/// - each policy is a chain per direction it isolates (`<id>-in`,
///   `<id>-eg`): a rule per (peer, port) of its rules, each counting, each
///   accepting; ipBlocks and ports are written into the rule (prefixes
///   and ranges, no sets);
/// - two base chains on the forward hook, `egress` then `ingress`: replies
///   pass, then a packet from (to) a pod a policy selects jumps to the
///   chains of every policy that selects it; an accept there ends the base
///   chain, and what no policy accepted is dropped and counted (named
///   counter `<id>-in-drops` / `<id>-eg-drops` of the first selecting
///   policy), logged to an NFLOG group when that is on.
///
/// A connection needs both: the egress chain's verdict for its source and
/// the ingress chain's for its destination. From the pod's own node nothing
/// is forwarded (it is output), so the node always reaches its pods.
/// The number of rules grows with policies, never with pods.
public struct PolicyRuleset: Equatable, Sendable {
    public struct Rule: Equatable, Sendable {
        public var body: String
        public var comment: String?
    }

    public static let ingressChain = "ingress"
    public static let egressChain = "egress"
    /// Base chains: after Berth's isolation (-10), on the forward hook.
    public static let egressPriority = "5"
    public static let ingressPriority = "6"

    /// Every group the policies name, in key order.
    public var groups: [PodGroup]
    /// Policy chains by name, their rules in order.
    public var chains: [String: [Rule]]
    /// Named drop counters, one per policy and direction it isolates.
    public var counters: [String]
    public var egress: [Rule]
    public var ingress: [Rule]

    /// The NFLOG prefix of drops by `policy` (at most 127 bytes, as the kernel keeps).
    public static func logPrefix(_ policy: NetworkPolicy, _ direction: PolicyDirection) -> String {
        let text = "berth drop \(direction == .ingress ? "ingress" : "egress") \(policy.qualifiedName): "
        return text.utf8.count <= 127 ? text : String(decoding: Array(text.utf8.prefix(120)), as: UTF8.self) + "...: "
    }

    public static func chainName(_ policy: NetworkPolicy, _ direction: PolicyDirection) -> String {
        "\(policy.id)-\(direction == .ingress ? "in" : "eg")"
    }

    public static func counterName(_ policy: NetworkPolicy, _ direction: PolicyDirection) -> String {
        "\(chainName(policy, direction))-drops"
    }

    /// `logGroup`: the NFLOG group drops are logged to (nil: not logged).
    public init(_ set: PolicySet, logGroup: Int? = nil) {
        groups = set.groups
        chains = [:]
        counters = []
        egress = [Rule(body: "ct state established,related accept", comment: nil)]
        ingress = egress
        var dropsIn: [Rule] = [], dropsEg: [Rule] = []
        for policy in set.policies.sorted(by: { $0.qualifiedName < $1.qualifiedName }) {
            let selected = policy.selectedGroup.id
            for direction in PolicyDirection.allCases where policy.policyTypes.contains(direction) {
                let chain = PolicyRuleset.chainName(policy, direction)
                let counter = PolicyRuleset.counterName(policy, direction)
                chains[chain] = PolicyRuleset.rules(of: policy, direction)
                counters.append(counter)
                let side = direction == .ingress ? "daddr" : "saddr"
                let log = logGroup.map { " log prefix \"\(PolicyRuleset.logPrefix(policy, direction))\" group \($0)" } ?? ""
                var jumps: [Rule] = [], drops: [Rule] = []
                for (family, suffix) in [("ip", "4"), ("ip6", "6")] {
                    jumps.append(Rule(body: "\(family) \(side) @\(selected)\(suffix) jump \(chain)", comment: nil))
                    drops.append(Rule(body: "\(family) \(side) @\(selected)\(suffix) counter name \"\(counter)\"\(log) drop", comment: nil))
                }
                if direction == .ingress {
                    ingress += jumps
                    dropsIn += drops
                } else {
                    egress += jumps
                    dropsEg += drops
                }
            }
        }
        ingress += dropsIn
        egress += dropsEg
    }

    /// A policy's chain for `direction`: what its rules accept, in order;
    /// each rule's nft rules carry the comment "ingress N" / "egress N".
    static func rules(of policy: NetworkPolicy, _ direction: PolicyDirection) -> [Rule] {
        let peerSide = direction == .ingress ? "saddr" : "daddr"
        var out: [Rule] = []
        for (i, rule) in policy.rules(direction).enumerated() {
            let comment = "\(direction == .ingress ? "ingress" : "egress") \(i + 1)"
            var peers: [String] = []
            if rule.peers.isEmpty { peers = [""] }
            for peer in rule.peers {
                switch peer {
                case .pods:
                    let id = policy.group(of: peer)!.id
                    peers.append("ip \(peerSide) @\(id)4")
                    peers.append("ip6 \(peerSide) @\(id)6")
                case .ipBlock(let cidr, let except):
                    let family = cidr.family == .v4 ? "ip" : "ip6"
                    var text = cidr.prefixLength == 0 ? "meta nfproto \(cidr.family == .v4 ? "ipv4" : "ipv6")" : "\(family) \(peerSide) \(cidr)"
                    for x in except { text += " \(family) \(peerSide) != \(x)" }
                    peers.append(text)
                }
            }
            var ports: [String] = []
            if rule.ports.isEmpty { ports = [""] }
            for port in rule.ports {
                var text = "meta l4proto \(port.proto.rawValue.lowercased())"
                if let first = port.first, let last = port.last {
                    text += first == last ? " th dport \(first)" : " th dport \(first)-\(last)"
                }
                ports.append(text)
            }
            for peer in peers {
                for port in ports {
                    let match = [peer, port].filter { !$0.isEmpty }.joined(separator: " ")
                    out.append(Rule(body: (match.isEmpty ? "" : match + " ") + "counter accept", comment: comment))
                }
            }
        }
        return out
    }
}

extension NetworkPolicy {
    /// The policy in words, a line per rule, each starting with the comment
    /// its nft rules carry ("ingress 1: from ... on TCP 5432").
    public var ruleWords: [(comment: String, words: String)] {
        var out: [(String, String)] = []
        for direction in PolicyDirection.allCases where policyTypes.contains(direction) {
            let name = direction == .ingress ? "ingress" : "egress"
            let rules = self.rules(direction)
            if rules.isEmpty { out.append(("\(name) -", "nothing is allowed (\(name) is denied)")) }
            for (i, rule) in rules.enumerated() {
                let peers = rule.peers.isEmpty ? "anyone" : rule.peers.map { peer -> String in
                    if let g = group(of: peer) { return g.words }
                    if case .ipBlock(let cidr, let except) = peer {
                        return except.isEmpty ? "addresses in \(cidr)" : "addresses in \(cidr) but not in \(except.map(\.description).joined(separator: ", "))"
                    }
                    return ""
                }.joined(separator: ", or ")
                let ports = rule.ports.isEmpty ? "any port" : rule.ports.map { p -> String in
                    guard let first = p.first, let last = p.last else { return "any \(p.proto.rawValue) port" }
                    return first == last ? "\(p.proto.rawValue) \(first)" : "\(p.proto.rawValue) \(first)-\(last)"
                }.joined(separator: ", ")
                out.append(("\(name) \(i + 1)", "\(direction == .ingress ? "from" : "to") \(peers), on \(ports)"))
            }
        }
        return out
    }
}

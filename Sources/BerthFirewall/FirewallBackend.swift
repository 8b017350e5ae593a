/// Where masquerade rules go (`ipMasqBackend`). MAC spoof rules are always nftables'.
public enum FirewallBackend: String, Sendable, CaseIterable {
    case nftables, iptables
}

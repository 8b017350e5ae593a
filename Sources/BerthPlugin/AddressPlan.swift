import BerthCNI
import BerthNet

/// What the bridge plugin does with an IPAM result, decided without touching
/// the kernel: the addresses and routes of the container interface, the
/// routes its result reports, and the gateway addresses the bridge holds.
public struct AddressPlan: Equatable, Sendable {
    /// The result's `ips`, each pointing at the container interface.
    public var ips: [CNIResult.IPConfig] = []
    /// The result's `routes`: IPAM's, plus a default route per family with `isDefaultGateway`.
    public var routes: [CNIResult.Route] = []
    /// The routes to install: a route without `gw` goes through the gateway of its family.
    public var installedRoutes: [CNIResult.Route] = []
    /// Gateway addresses for the bridge (with `isGateway`), with the subnet's prefix length.
    public var bridgeAddresses: [IPPrefix] = []

    public init(ipamResult: CNIResult, isGateway: Bool, isDefaultGateway: Bool, interfaceIndex: Int) {
        var gatewayOfFamily: [IPAddress.Family: IPAddress] = [:]
        for var ip in ipamResult.ips {
            ip.interface = interfaceIndex
            if isGateway && ip.gateway == nil {
                // As docker0 does: the first address of the subnet.
                ip.gateway = ip.address.network.address.advanced(by: 1)
            }
            if let gw = ip.gateway {
                if gatewayOfFamily[ip.address.family] == nil { gatewayOfFamily[ip.address.family] = gw }
                if isGateway, let onBridge = IPPrefix(address: gw, prefixLength: ip.address.prefixLength),
                   !bridgeAddresses.contains(onBridge) {
                    bridgeAddresses.append(onBridge)
                }
            }
            ips.append(ip)
        }
        routes = ipamResult.routes
        if isDefaultGateway {
            for family in [IPAddress.Family.v4, .v6] {
                guard let gw = gatewayOfFamily[family],
                      !routes.contains(where: { $0.dst.family == family && $0.dst.isDefaultRoute }) else { continue }
                let zero = IPAddress(bytes: [UInt8](repeating: 0, count: family == .v4 ? 4 : 16))!
                routes.append(CNIResult.Route(dst: IPPrefix(address: zero, prefixLength: 0)!, gw: gw))
            }
        }
        installedRoutes = routes.map { route in
            var r = route
            if r.gw == nil { r.gw = gatewayOfFamily[r.dst.family] }
            return r
        }
    }
}

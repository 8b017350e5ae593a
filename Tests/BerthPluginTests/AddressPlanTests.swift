import Testing
import BerthNetlink
@testable import BerthCNI
@testable import BerthPlugin
import BerthJSON
import BerthNet

@Suite("Address plan from an IPAM result")
struct AddressPlanTests {
    @Test("isGateway fills a missing gateway with the subnet's first address and puts it on the bridge")
    func gateway() {
        let ipam = CNIResult(ips: [.init(address: IPPrefix("10.5.0.7/16")!)])
        let plan = AddressPlan(ipamResult: ipam, isGateway: true, isDefaultGateway: false, interfaceIndex: 2)
        #expect(plan.ips == [.init(address: IPPrefix("10.5.0.7/16")!, gateway: IPAddress("10.5.0.1"), interface: 2)])
        #expect(plan.bridgeAddresses == [IPPrefix("10.5.0.1/16")!])
        #expect(plan.routes.isEmpty)
    }

    @Test("without isGateway the bridge gets no address and the IPAM gateway is kept")
    func noGateway() {
        let ipam = CNIResult(ips: [.init(address: IPPrefix("10.5.0.7/16")!, gateway: IPAddress("10.5.0.254"))])
        let plan = AddressPlan(ipamResult: ipam, isGateway: false, isDefaultGateway: false, interfaceIndex: 2)
        #expect(plan.bridgeAddresses.isEmpty)
        #expect(plan.ips.first?.gateway == IPAddress("10.5.0.254"))
    }

    @Test("isDefaultGateway adds one default route per family unless IPAM gave one")
    func defaultRoutes() {
        let ipam = CNIResult(
            ips: [.init(address: IPPrefix("10.5.0.7/24")!), .init(address: IPPrefix("fd05::7/64")!)],
            routes: [.init(dst: IPPrefix("::/0")!, gw: IPAddress("fd05::99"))])
        let plan = AddressPlan(ipamResult: ipam, isGateway: true, isDefaultGateway: true, interfaceIndex: 2)
        #expect(plan.routes.map(\.dst.description) == ["::/0", "0.0.0.0/0"])
        #expect(plan.routes[1].gw == IPAddress("10.5.0.1"))
        #expect(plan.bridgeAddresses == [IPPrefix("10.5.0.1/24")!, IPPrefix("fd05::1/64")!])
    }

    @Test("a route without gw is installed through its family's gateway")
    func routeWithoutGateway() {
        let ipam = CNIResult(ips: [.init(address: IPPrefix("10.5.0.7/24")!, gateway: IPAddress("10.5.0.1"))],
                             routes: [.init(dst: IPPrefix("192.168.77.0/24")!)])
        let plan = AddressPlan(ipamResult: ipam, isGateway: false, isDefaultGateway: false, interfaceIndex: 2)
        #expect(plan.routes[0].gw == nil)
        #expect(plan.installedRoutes[0].gw == IPAddress("10.5.0.1"))
    }

    @Test("a result built in code with a gateway of the other family gives the bridge no gateway address")
    func otherFamilyGateway() {
        let mixed = CNIResult(ips: [.init(address: IPPrefix("fd00::5/64")!, gateway: IPAddress("10.0.0.1")!)])
        #expect(AddressPlan(ipamResult: mixed, isGateway: true, isDefaultGateway: false, interfaceIndex: 2).bridgeAddresses.isEmpty)
    }

    @Test("a CNI route becomes the kernel route with every attribute")
    func routeSpec() {
        let route = CNIResult.Route(dst: IPPrefix("10.9.0.0/16")!, gw: IPAddress("10.1.0.1"), mtu: 1400, advmss: 1360,
                                    priority: 7, table: 100, scope: 253)
        #expect(RouteSpec(route) == RouteSpec(destination: IPPrefix("10.9.0.0/16")!, gateway: IPAddress("10.1.0.1"), table: 100,
                                              scope: 253, priority: 7, mtu: 1400, advmss: 1360))
    }
}

import Testing
import BerthCNI
import BerthJSON
import BerthNet
@testable import BerthNames

@Suite("names on a network (pure)")
struct NamesTests {
    @Test("names are made canonical (lower case, '_' as '-'); what is still no DNS name is refused, saying why")
    func canonical() throws {
        #expect(try DNSName.canonical("Web_1").get() == "web-1")
        for (bad, words) in [("", "is empty"), ("db.shop", "one label, without '.'"), ("-web", "begins or ends with '-'"), ("web!", "only letters"),
                             ("caf\u{E9}", "only letters"), (String(repeating: "a", count: 64), "longer than 63"),
                             ("www.example.com", "one label"), ("a b", "only letters")] {
            guard case .failure(let problem) = DNSName.canonical(bad) else { Issue.record("accepted \(bad)"); continue }
            #expect(problem.description.contains(words), "\(bad): \(problem)")
        }
    }

    @Test("reverse zones at whole octets and nibbles")
    func reverseZones() {
        #expect(DNSName.reverseZone(IPPrefix("10.22.3.0/24")!) == "3.22.10.in-addr.arpa")
        #expect(DNSName.reverseZone(IPPrefix("10.22.0.0/16")!) == "22.10.in-addr.arpa")
        #expect(DNSName.reverseZone(IPPrefix("10.22.3.64/26")!) == "3.22.10.in-addr.arpa")
        #expect(DNSName.reverseZone(IPPrefix("fd00:1:2:3::/64")!) == "3.0.0.0.2.0.0.0.1.0.0.0.0.0.d.f.ip6.arpa")
        #expect(DNSName.reverseZone(IPPrefix("fd00::/62")!) == "0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa")
    }

    static func reader(_ text: String) throws -> FieldReader {
        FieldReader(try #require(try JSON.parse(Array(text.utf8)).objectValue))
    }

    @Test("the names field: true, false, an object with a domain; a domain that is no DNS name is error 7 naming the field")
    func config() throws {
        #expect(try NamesConfig.read(NamesTests.reader(#"{"names":true}"#)) == NamesConfig(domain: "berth.internal"))
        #expect(try NamesConfig.read(NamesTests.reader(#"{"names":false}"#)) == nil)
        #expect(try NamesConfig.read(NamesTests.reader(#"{}"#)) == nil)
        #expect(try NamesConfig.read(NamesTests.reader(#"{"names":{"domain":"Shop.Internal."}}"#)) == NamesConfig(domain: "shop.internal"))
        for (bad, words) in [(#"{"names":{"domain":"bad_domain"}}"#, "field \"names.domain\": \"bad_domain\" is not a DNS domain"),
                             (#"{"names":{"domain":"a..b"}}"#, "names.domain"), (#"{"names":{"domain":"3.2.1.in-addr.arpa"}}"#, "reverse zone"),
                             (#"{"names":"yes"}"#, "field \"names\": expected true, false or an object"),
                             (#"{"names":{"domain":7}}"#, "names.domain")] {
            do {
                _ = try NamesConfig.read(NamesTests.reader(bad))
                Issue.record("accepted \(bad)")
            } catch let error as CNIError {
                #expect(error.code == 7 && error.msg.contains(words), "\(error)")
            }
        }
    }

    @Test("an attachment's names: the pod's name and its aliases (a list, podman's map by network, args.cni), canonical, no repeats; a bad one names its source and code")
    func requested() throws {
        let top = try NamesTests.reader(#"{"runtimeConfig":{"aliases":{"pods":["Web","cache"],"other":["no"]}},"args":{"cni":{"aliases":["web","api"]}}}"#)
        #expect(try RequestedNames.read(top: top, cniArgs: [("K8S_POD_NAME", "my_app")], network: "pods") == ["my-app", "web", "cache", "api"])
        let list = try NamesTests.reader(#"{"runtimeConfig":{"aliases":["one"]}}"#)
        #expect(try RequestedNames.read(top: list, cniArgs: [], network: "pods") == ["one"])
        #expect(try RequestedNames.read(top: NamesTests.reader("{}"), cniArgs: [], network: "pods") == [])
        do {
            _ = try RequestedNames.read(top: NamesTests.reader("{}"), cniArgs: [("K8S_POD_NAME", "bad!name")], network: "pods")
            Issue.record("accepted bad!name")
        } catch let error as CNIError {
            #expect(error.code == 4 && error.msg.contains("CNI_ARGS K8S_POD_NAME: \"bad!name\""), "\(error)")
        }
        do {
            _ = try RequestedNames.read(top: NamesTests.reader(#"{"args":{"cni":{"aliases":["-x"]}}}"#), cniArgs: [], network: "pods")
            Issue.record("accepted -x")
        } catch let error as CNIError {
            #expect(error.code == 7 && error.msg.contains("args.cni.aliases: \"-x\""), "\(error)")
        }
    }

    @Test("an entry's hosts file holds every address with every name, short and in the domain, and reads back")
    func hostsFile() throws {
        let entry = NameEntry(attachment: "pods:abc:eth0", names: ["web", "api"], addresses: [IPAddress("10.22.0.5")!, IPAddress("fd00::5")!], since: 1765000000)
        let text = String(decoding: entry.hostsFile(domain: "berth.internal"), as: UTF8.self)
        #expect(text == "# berth attachment=pods:abc:eth0 since=1765000000\n10.22.0.5 web.berth.internal web api.berth.internal api\nfd00::5 web.berth.internal web api.berth.internal api\n")
        #expect(NameEntry.parse(entry.hostsFile(domain: "berth.internal"), domain: "berth.internal") == entry)
        #expect(NameEntry.parse(Array("10.0.0.1 x\n".utf8), domain: "d") == nil)
    }

    @Test("the server's arguments: no host configuration, the gateways only, authoritative for the domain and reverse zones")
    func serverArguments() {
        let plan = NameServerPlan(domain: "berth.internal", listen: [IPAddress("10.22.0.1")!, IPAddress("fd00:22::1")!],
                                  subnets: [IPPrefix("10.22.0.0/24")!, IPPrefix("fd00:22::/64")!, IPPrefix("10.22.0.0/24")!],
                                  hostsDirectories: ["/run/berth/dns/pods/hosts.d"], pidFile: "/run/berth/dns/pods/dnsmasq.pid", logFile: "/l")
        let a = plan.arguments
        for expected in ["--conf-file=/dev/null", "--no-hosts", "--bind-dynamic", "--listen-address=10.22.0.1", "--listen-address=fd00:22::1",
                         "--local=/berth.internal/", "--local=/0.22.10.in-addr.arpa/", "--local=/0.0.0.0.0.0.0.0.2.2.0.0.0.0.d.f.ip6.arpa/",
                         "--hostsdir=/run/berth/dns/pods/hosts.d", "--pid-file=/run/berth/dns/pods/dnsmasq.pid", "--bogus-priv"] {
            #expect(a.contains(expected), "\(expected) in \(a)")
        }
        #expect(!a.contains { $0.hasPrefix("--interface") } && a.filter { $0.hasPrefix("--local=/0.22") }.count == 1)
    }
}

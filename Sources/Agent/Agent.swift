import Provisioner
@main struct AgentMain { static func main() {} }

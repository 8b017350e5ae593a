import BerthPlugin

BerthPlugin.main()

from services.coupons.cli import main

main()

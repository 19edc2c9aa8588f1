print("connvaultd")

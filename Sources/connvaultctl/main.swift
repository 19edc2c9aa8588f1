print("connvaultctl")

"""The operator CLI ``phi-exchange-admin``: rotate a partner's access key, hand over its
credentials, and list every partner key with its rotation and grace-period state."""

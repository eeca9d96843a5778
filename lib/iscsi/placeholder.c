/* placeholder until the layer lands */
int rod_iscsi_placeholder_;

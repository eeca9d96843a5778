/* placeholder until the layer lands */
int rod_store_placeholder_;
